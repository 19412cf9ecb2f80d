"""What Ray Train's controller and dataset manager unpickle for a trial (run callbacks, the data
split config, the failure policy) imports neither timm nor the models: those fresh processes,
one set per trial, would otherwise spend seconds of CPU importing them."""

from __future__ import annotations

import subprocess
import sys

import ray.cloudpickle as cloudpickle
from ray.train import FailureConfig

from audiosweep.tracking import MLflowEpochCallback
from audiosweep.train.data_split import ExactEvalDataConfig
from audiosweep.train.failures import DeterministicFailurePolicy
from audiosweep.train.run_folder import RunFolderCallback

HEAVY = ("timm", "torchvision", "torchaudio", "dcls", "audiosweep.models", "audiosweep.train.loop")

_LOAD = """
import sys
import ray.cloudpickle as cloudpickle
cloudpickle.loads(sys.stdin.buffer.read())
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def modules_imported_by_unpickling(obj: object) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD.format(heavy=HEAVY)],
        input=cloudpickle.dumps(obj),
        capture_output=True,
        check=True,
    )
    return [m for m in out.stdout.decode().strip().split(",") if m]


def test_the_probe_sees_a_heavy_import() -> None:
    from audiosweep.train.loop import train_loop_per_worker

    assert "audiosweep.train.loop" in modules_imported_by_unpickling(train_loop_per_worker)


def test_controller_side_objects_import_no_model_code(tmp_path) -> None:
    objects = [
        RunFolderCallback(str(tmp_path)),
        MLflowEpochCallback("http://127.0.0.1:1", "run"),
        ExactEvalDataConfig(),
        DeterministicFailurePolicy(FailureConfig(max_failures=1)),
    ]
    assert modules_imported_by_unpickling(objects) == []
