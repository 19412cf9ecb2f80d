"""`audiosweep evaluate` on a real Ray head and MLflow server: a tracked smoke trial (with a
weight EMA) is evaluated again from its run folder and, through `ray job submit`, from the
MLflow logged model it left; both reproduce the eval mAP the trial logged."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import run_cli, submit_job

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def test_trial_logs_its_final_weights_as_a_model_linked_to_its_metrics(trained_run):
    run_dir, run, client = trained_run.run_dir, trained_run.run, trained_run.client
    metrics = run.data.metrics
    assert 0.0 <= metrics["eval_map"] <= 1.0 and 0.0 <= metrics["eval_map_ema"] <= 1.0
    # The EMA at 0.9 is not the final weights: the two scores are measured apart.
    assert metrics["eval_map"] != metrics["eval_map_ema"]
    assert (run_dir / "model_ema.safetensors").is_file()

    model_id = run.data.tags["audiosweep.model_id"]
    model = client.get_logged_model(model_id)
    assert model.source_run_id == run.info.run_id and model.name == "final"
    assert model.experiment_id == run.info.experiment_id
    assert model.tags["case"] == "convnext_atto/dsc"
    linked = {m.key: m.value for m in model.metrics}
    assert linked["eval_map"] == metrics["eval_map"]
    assert linked["eval_map_ema"] == metrics["eval_map_ema"]
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        order_by=[{"field_name": "metrics.eval_map", "ascending": False}],
    )
    assert model_id in {m.model_id for m in found}


def test_evaluate_run_folder_reproduces_the_logged_map(
    trained_run, ray_address, mlflow_server, tmp_path
):
    run_dir, run, client = trained_run.run_dir, trained_run.run, trained_run.client
    out = tmp_path / "report"
    proc = run_cli(
        [
            "evaluate",
            str(run_dir),
            "--address",
            ray_address,
            "--tracking-uri",
            mlflow_server,
            "--out",
            str(out),
            "--save-scores",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["eval_clips"] == 23 and report["split"] == "eval"
    assert report["eval_map"] == pytest.approx(run.data.metrics["eval_map"], abs=1e-6)
    assert report["eval_dprime"] == pytest.approx(run.data.metrics["eval_dprime"], abs=1e-5)

    # The report against scikit-learn and scipy on the saved probabilities.
    with np.load(out / "scores.npz") as saved:
        targets, scores = saved["target"], saved["scores"]
        assert len(set(saved["clip_id"].tolist())) == 23
    present = targets.sum(0) > 0
    absent = (targets == 0).sum(0) > 0
    ap = average_precision_score(targets[:, present], scores[:, present], average=None)
    both = present & absent
    auc = roc_auc_score(targets[:, both], scores[:, both], average=None)
    assert report["eval_map"] == pytest.approx(ap.mean(), abs=1e-9)
    assert report["eval_dprime"] == pytest.approx(math.sqrt(2) * norm.ppf(auc.mean()), abs=1e-6)
    rows = list(csv.DictReader((out / "per_class_ap.csv").open()))
    assert len(rows) == 10
    np.testing.assert_allclose([float(r["ap"]) for r in rows if r["ap"]], ap, atol=1e-6)

    from audiosweep.models.checkpoints import file_sha256

    (evaluation,) = client.search_runs(
        [client.get_experiment_by_name("audiosweep-evaluate").experiment_id],
        f"tags.`audiosweep.checkpoint_sha256` = '{file_sha256(run_dir / 'model.safetensors')}'",
    )
    assert evaluation.data.metrics["eval_map"] == report["eval_map"]
    assert evaluation.data.tags["audiosweep.role"] == "evaluation"
    # The scored split as its dataset input, the trial's dataset fingerprint as digest.
    (scored,) = client.get_run(evaluation.info.run_id).inputs.dataset_inputs
    assert scored.dataset.name.endswith("/eval")
    assert [(t.key, t.value) for t in scored.tags] == [("mlflow.data.context", "evaluation")]
    assert scored.dataset.digest == run.data.tags["audiosweep.dataset"]


def test_evaluate_job_on_the_logged_model_reproduces_the_ema_map(
    trained_run, ray_head, mlflow_server, tmp_path
):
    run, client = trained_run.run, trained_run.client
    model_id = run.data.tags["audiosweep.model_id"]
    out = tmp_path / "report"
    proc = submit_job(
        ray_head["dashboard"],
        [
            "jobs/evaluate.py",
            f"models:/{model_id}",
            "--ema",
            "--out",
            str(out),
        ],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["ema"] is True and report["model_id"] == model_id
    assert report["eval_map"] == pytest.approx(run.data.metrics["eval_map_ema"], abs=1e-6)
    # The evaluation's metrics are linked to the model it evaluated.
    evaluations = [
        m for m in client.get_logged_model(model_id).metrics if m.run_id != run.info.run_id
    ]
    assert {m.key for m in evaluations} >= {"eval_map", "eval_dprime", "eval_mean_dprime"}


def test_tagging_the_logged_model_scores_as_its_run_folder(trained_run, mlflow_server, tmp_path):
    """`tag --model models:/<id>`: the weights and config the trial logged, the run's scores."""
    import soundfile as sf

    from audiosweep.cli import main

    wave = 0.1 * np.random.default_rng(0).standard_normal((3 * 22_050, 2))
    sf.write(tmp_path / "rec.wav", wave.astype(np.float32), 22_050)
    model_id = trained_run.run.data.tags["audiosweep.model_id"]
    tagged = {}
    for name, model in (("logged", f"models:/{model_id}"), ("folder", str(trained_run.run_dir))):
        out = tmp_path / f"{name}.json"
        args = ["tag", str(tmp_path / "rec.wav"), "--model", model, "--out", str(out), "--local"]
        assert main([*args, "--tracking-uri", mlflow_server]) == 0
        tagged[name] = json.loads(out.read_text())
    assert tagged["logged"][0]["windows"] == tagged["folder"][0]["windows"]
    assert len(tagged["logged"][0]["scores"]) == 10
