"""SP4ASC end to end on the scene demo: `audiosweep train` on a real Ray head, tracked by a real
MLflow server, then `audiosweep export --run` of the trained model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss

from conftest import run_cli

pytestmark = pytest.mark.integration

EVAL_CLIPS = 20


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]


@pytest.fixture(scope="module")
def scene_run(ray_address, mlflow_server, tmp_path_factory):
    from audiosweep.data.scene_demo import prepare_scene_demo

    data = tmp_path_factory.mktemp("datasets") / "scenes"
    prepare_scene_demo(
        data, train_clips=40, eval_clips=EVAL_CLIPS, clip_seconds=2.0, progress=False
    )
    run_root = tmp_path_factory.mktemp("runs")
    proc = run_cli(
        [
            "train",
            "--preset",
            "sp4asc_demo",
            f"data.path={data}",
            "train.epochs=1",
            "data.samples_per_epoch=64",  # two optimizer steps
            "augment.tta_views=3",
            "--name",
            "sp4asc",
            "--run-root",
            str(run_root),
            "--address",
            ray_address,
            "--tracking-uri",
            mlflow_server,
        ]
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return run_root / "sp4asc", data, proc


def test_accuracy_and_log_loss_are_logged_and_equal_scikit_learn(scene_run, mlflow_server):
    run_dir, data, proc = scene_run
    (row,) = _metrics(run_dir)
    assert row["eval_clips"] == EVAL_CLIPS
    assert 0.0 <= row["eval_accuracy"] <= 1.0 and 0.0 <= row["eval_accuracy_tta"] <= 1.0
    assert math.isfinite(row["eval_log_loss"]) and math.isfinite(row["eval_log_loss_tta"])
    assert row["eval_chance_accuracy"] == pytest.approx(0.1)  # 2 clips of each of 10 scenes
    assert "acc " in proc.stdout and "log loss " in proc.stdout

    # The logged plain scores are scikit-learn's on the final model's predictions.
    import yaml

    from audiosweep.audio import FrontEnd
    from audiosweep.config import TrialConfig
    from audiosweep.data.plain_reader import iter_numpy_batches
    from audiosweep.models import create_model_from_config
    from audiosweep.train.checkpoint import load_model_weights

    cfg = TrialConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert cfg.data.task == "singlelabel"  # from the dataset's manifest
    model = load_model_weights(create_model_from_config(cfg, 10), run_dir / "model.safetensors")
    frontend = FrontEnd(cfg.audio)
    probs, labels = [], []
    with torch.no_grad():
        for batch in iter_numpy_batches(data, "eval", batch_size=50):
            spec = frontend(torch.from_numpy(batch["waveform"]), augment=False)
            probs.append(torch.softmax(model.eval()(spec), 1).numpy())
            labels.append(batch["target"].argmax(1))
    p, y = np.concatenate(probs).astype(np.float64), np.concatenate(labels)
    assert row["eval_accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)))
    assert row["eval_log_loss"] == pytest.approx(log_loss(y, p, labels=list(range(10))), rel=1e-4)

    from audiosweep import tracking

    client = tracking.client(mlflow_server)
    exp = client.get_experiment_by_name("audiosweep-train")
    (run,) = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'sp4asc'")
    logged = run.data.metrics
    assert logged["final_accuracy"] == pytest.approx(row["eval_accuracy"])
    assert logged["final_log_loss_tta"] == pytest.approx(row["eval_log_loss_tta"])
    assert run.data.params["data.task"] == "singlelabel"


def test_export_of_the_run_fits_128_kb_and_predicts_as_trained(scene_run, tmp_path):
    run_dir, _, _ = scene_run
    out = tmp_path / "sp4asc_fp16.safetensors"
    proc = run_cli(["export", "--run", str(run_dir), "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout)
    assert info["bytes"] == out.stat().st_size <= 128 * 1024 and info["within_limit"]

    import yaml

    from audiosweep.config import TrialConfig
    from audiosweep.models import create_model_from_config
    from audiosweep.models.export import load_folded_fp16
    from audiosweep.train.checkpoint import load_model_weights

    cfg = TrialConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    trained = load_model_weights(create_model_from_config(cfg, 10), run_dir / "model.safetensors")
    folded = load_folded_fp16(out)
    x = torch.randn(4, 1, cfg.audio.n_mels, 63)
    with torch.no_grad():
        expected = torch.softmax(trained.eval()(x), 1)
        got = torch.softmax(folded(x), 1)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)
