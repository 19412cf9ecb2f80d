"""One-worker trials run in their caller's process (`train.in_process`): what Ray Train would
do for the run (checkpoints persisted and pruned, callbacks, resumption, retries that skip
deterministic failures) done here, then a trial end to end on a real Ray head, which starts no
Ray Train actors (a sweep of such trials: test_sweep_integration.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train.v2.api.exceptions import WorkerGroupError

from audiosweep.layout import CHECKPOINT_POINTER
from audiosweep.train.data_split import ExactEvalDataConfig
from audiosweep.train.failures import deterministic_reason
from audiosweep.train.in_process import checkpoint_names, fit_in_process
from audiosweep.train.run_folder import RunFolderCallback
from conftest import RAY_TRAIN_ACTORS, count_actors, run_cli

REPO = Path(__file__).resolve().parents[1]


class LoopOnly:
    """What `fit_in_process` reads of a `TorchTrainer`: its run config, datasets (none here),
    data config and the loop's config."""

    def __init__(self, run_dir: Path, *, max_failures: int = 2, keep: int = 2) -> None:
        self.run_config = RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep),
            callbacks=[RunFolderCallback(str(run_dir))],
        )
        self.datasets: dict = {}
        self.data_config = ExactEvalDataConfig()
        self.train_loop_config = {"epochs": 3}


def _report_epoch(session, epoch: int, scratch: Path) -> None:
    import ray.train

    folder = scratch / f"epoch{epoch}"
    folder.mkdir(parents=True)
    (folder / "epoch.txt").write_text(str(epoch))
    session.report({"epoch": epoch}, ray.train.Checkpoint.from_directory(folder))


def test_a_failure_that_would_repeat_is_not_retried(tmp_path):
    calls = []

    def loop(config, session):
        calls.append(1)
        raise ValueError("bad   value\nin the config")

    with pytest.raises(WorkerGroupError) as info:
        fit_in_process(LoopOnly(tmp_path / "run"), str(tmp_path / "run"), loop)
    assert len(calls) == 1
    assert deterministic_reason(info.value) == "ValueError: bad value in the config"


def test_other_failures_are_retried_max_failures_times(tmp_path):
    calls = []

    def loop(config, session):
        calls.append(1)
        raise OSError("node lost")

    with pytest.raises(WorkerGroupError) as info:
        fit_in_process(LoopOnly(tmp_path / "run", max_failures=2), str(tmp_path / "run"), loop)
    assert len(calls) == 3
    assert deterministic_reason(info.value) is None


def test_a_retry_resumes_from_the_last_persisted_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    seen = []

    def loop(config, session):
        restored = session.checkpoint()
        start = 0
        if restored is not None:
            with restored.as_directory() as d:
                start = int(Path(d, "epoch.txt").read_text()) + 1
        seen.append(start)
        assert (session.rank, session.world) == (0, 1)
        for epoch in range(start, config["epochs"]):
            _report_epoch(session, epoch, tmp_path / f"scratch{len(seen)}-{epoch}")
            if epoch == 1 and len(seen) == 1:
                raise OSError("worker lost after epoch 1")
        return "done"

    result = fit_in_process(LoopOnly(run_dir, keep=2), str(run_dir), loop)

    assert seen == [0, 2]  # the retry started after the last checkpoint, epoch 1
    assert result.return_value == "done" and result.metrics == {"epoch": 2}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    kept = checkpoint_names(_folder(run_dir))
    assert len(kept) == 2  # num_to_keep: the oldest was removed
    assert [(run_dir / k / "epoch.txt").read_text() for k in kept] == ["1", "2"]
    assert Path((run_dir / CHECKPOINT_POINTER).read_text().strip()).name == kept[-1]
    assert Path(result.checkpoint.path).name == kept[-1]
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def _folder(path: Path):
    from audiosweep.storage import Folder

    return Folder(str(path))


def _train_args(smoke_dataset: Path, run_root: Path, epochs: int, address: str) -> list[str]:
    return [
        "train",
        "--preset",
        "smoke",
        f"data.path={smoke_dataset}",
        "train.num_workers=1",
        "train.cpus_per_worker=0.5",
        "train.in_process=true",
        f"train.epochs={epochs}",
        "--name",
        "in-process",
        "--run-root",
        str(run_root),
        "--address",
        address,
        "--no-track",
    ]


@pytest.mark.integration
def test_trial_in_process_trains_resumes_and_starts_no_ray_train_actor(
    ray_address, smoke_dataset, tmp_path
):
    before = {name: count_actors(ray_address, name) for name in RAY_TRAIN_ACTORS}
    run_root = tmp_path / "runs"
    first = run_cli(_train_args(smoke_dataset, run_root, 2, ray_address))
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-5000:]
    run_dir = run_root / "in-process"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["eval_clips"] == 23 for r in rows)  # every eval clip, once
    assert (run_dir / "model.safetensors").is_file()
    assert "Starting execution of Dataset" not in first.stdout + first.stderr

    again = run_cli([*_train_args(smoke_dataset, run_root, 3, ray_address), "--resume"])
    assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-5000:]
    assert "resumed from checkpoint after epoch 2" in again.stdout
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]

    from audiosweep.train.checkpoint import load_training_state

    pointer = Path((run_dir / CHECKPOINT_POINTER).read_text().strip())
    assert pointer.parent == run_dir and load_training_state(pointer)["epoch"] == 2
    assert len(checkpoint_names(_folder(run_dir))) == 2  # the smoke preset keeps 2
    assert {name: count_actors(ray_address, name) for name in RAY_TRAIN_ACTORS} == before
