"""One trial end to end on a real Ray head (the session's shared trained run, conftest.py): 2 Ray
Train workers (gloo, CPU) reading Parquet shards through Ray Data. The second test kills a
worker process mid-run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TRAINED_EPOCHS as EPOCHS
from conftest import VENV_BIN, smoke_train_args

pytestmark = pytest.mark.integration


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_smoke_trial_writes_metrics_and_checkpoint(trained_run, smoke_dataset):
    run_dir = trained_run.run_dir
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    for row in rows:
        assert 0.0 <= row["eval_map"] <= 1.0
        assert row["eval_clips"] == 23  # every eval clip counted once across the 2 workers
        assert math.isfinite(row["train_loss"])
    last = rows[-1]
    assert last["params_total"] > 0 and last["macs_per_clip"] > 0
    assert last["train_step_peak_bytes"] > 0
    assert last["cost_clip_shape"] == "1x128x201"  # 2 s at 32 kHz, hop 320
    assert (run_dir / "config.yaml").is_file()
    assert len((run_dir / "per_class_ap.csv").read_text().splitlines()) == 1 + 10
    # The run names the dataset it read: its splits as MLflow inputs, digest = the fingerprint.
    from audiosweep.data import DatasetInfo

    run = trained_run.client.get_run(trained_run.run.info.run_id)
    fingerprint = DatasetInfo.load(smoke_dataset).fingerprint[:16]
    assert {
        (d.dataset.name.rsplit("/", 1)[-1], d.tags[0].value, d.dataset.digest)
        for d in run.inputs.dataset_inputs
    } == {("train", "training", fingerprint), ("eval", "evaluation", fingerprint)}
    assert run.data.tags["audiosweep.dataset"] == fingerprint

    from audiosweep.models import create_model
    from audiosweep.train.checkpoint import load_model_weights, load_training_state

    checkpoint = Path((run_dir / "final_checkpoint.txt").read_text().strip())
    state = load_training_state(checkpoint)  # weights_only=True inside
    assert state["epoch"] == EPOCHS - 1
    model = create_model("convnext_atto", num_classes=10, drop_path_rate=0.1)
    load_model_weights(model, run_dir / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["model"][key]), key


def _worker_pids(dashboard: str) -> list[int]:
    from ray.util.state import list_actors

    actors = list_actors(
        address=dashboard,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    return [a.pid for a in actors if a.pid]


def test_killed_worker_resumes_from_checkpoint(ray_head, smoke_dataset, trained_run, tmp_path):
    run_root = tmp_path / "runs"
    log = tmp_path / "train.log"
    # The shared run's config, untracked: the same seed and data must end where it ended.
    cmd = [
        str(VENV_BIN / "audiosweep"),
        *smoke_train_args(smoke_dataset, run_root, "killed", ray_head["address"]),
        "--no-track",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1]
        )
    run_dir = run_root / "killed"
    killed = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if _metrics(run_dir):  # epoch 1 is checkpointed: kill a worker during epoch 2
                pids = _worker_pids(ray_head["dashboard"])
                if pids:
                    killed = pids[-1]
                    os.kill(killed, signal.SIGKILL)
                    break
            time.sleep(0.5)
        assert killed is not None, (
            "never saw epoch 1 and a live worker to kill:\n" + log.read_text()[-3000:]
        )
        assert proc.wait(timeout=600) == 0, log.read_text()[-5000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "resumed from checkpoint after epoch" in text, text[-3000:]
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))  # no epoch logged twice
    # Same seed, same data: the resumed run ends where the uninterrupted one did.
    reference = _metrics(trained_run.run_dir)[-1]
    assert rows[-1]["eval_map"] == pytest.approx(reference["eval_map"], abs=1e-6)
    assert rows[-1]["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-5)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
