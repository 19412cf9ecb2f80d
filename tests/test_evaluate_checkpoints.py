"""What `audiosweep evaluate` reads: every checkpoint form, to the same weights, and a one-line
error for one that does not fit. The reference layouts are written by the tests
(tests/checkpoint_layouts.py); no network."""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from audiosweep.config import ConfigError, load_preset
from audiosweep.evaluate.run import (
    Evaluation,
    build_model,
    resolve_eval_config,
    write_per_class,
    write_report,
)
from audiosweep.evaluate.source import CheckpointError, open_checkpoint
from audiosweep.models import create_model
from audiosweep.models.checkpoints import file_sha256
from audiosweep.train import checkpoint as ckpt
from audiosweep.train.task import MultiLabel
from checkpoint_layouts import fb_convnext_layout

ARCH, CLASSES = "convnext_atto", 10


def _model(seed: int, arch: str = ARCH, conv: str = "dsc", classes: int = CLASSES):
    torch.manual_seed(seed)
    return create_model(arch, conv, num_classes=classes, drop_path_rate=0.1).eval()


def _cfg(**overrides):
    return load_preset("smoke", {"model.arch": ARCH, **overrides})


def _assert_weights(model, expected) -> None:
    got, want = model.state_dict(), expected.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


@pytest.fixture
def run_folder(tmp_path):
    """A trial's run folder and one Ray Train checkpoint folder in it, as training leaves them."""
    plain, averaged = _model(0), _model(1)
    run = tmp_path / "runs" / "smoke"
    checkpoint_dir = run / "checkpoint_2026-12-01_00-00-00.000000"
    checkpoint_dir.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(_cfg().to_dict()))
    ckpt.save_model_weights(plain, run / ckpt.MODEL_FILE)
    ckpt.save_model_weights(averaged, run / ckpt.MODEL_EMA_FILE)
    optimizer = torch.optim.AdamW(plain.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ckpt.save_training_state(
        checkpoint_dir,
        model=plain,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=None,
        epoch=1,
        extra={"ema": averaged.state_dict()},
    )
    return run, checkpoint_dir, plain, averaged


@pytest.mark.parametrize("where", ["run", "checkpoint", "state"])
@pytest.mark.parametrize("ema", [False, True])
def test_run_and_checkpoint_folders_give_the_trained_weights_and_config(run_folder, where, ema):
    run, checkpoint_dir, plain, averaged = run_folder
    location = {"run": run, "checkpoint": checkpoint_dir, "state": checkpoint_dir / "state.pt"}
    source = open_checkpoint(str(location[where]), ema=ema)
    assert source.layout == "audiosweep"
    assert source.sha256 == file_sha256(source.path)
    cfg = resolve_eval_config(source, None, [])
    assert cfg.model.arch == ARCH and cfg.preset == "smoke"
    model = build_model(cfg, CLASSES, source, ema=ema)
    _assert_weights(model, averaged if ema else plain)


def test_ema_of_a_checkpoint_trained_without_it_is_refused(tmp_path):
    model = _model(0)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ckpt.save_training_state(
        tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None, epoch=0
    )
    source = open_checkpoint(str(tmp_path / "state.pt"), ema=True)
    with pytest.raises(CheckpointError, match="no EMA weights"):
        build_model(_cfg(), CLASSES, source, ema=True)


def test_a_bare_safetensors_file_needs_a_preset(tmp_path):
    expected = _model(3)
    path = tmp_path / "weights.safetensors"
    ckpt.save_model_weights(expected, path)
    source = open_checkpoint(str(path))
    with pytest.raises(ConfigError, match="--preset"):
        resolve_eval_config(source, None, [])
    cfg = resolve_eval_config(source, "smoke", [f"model.arch={ARCH}"])
    _assert_weights(build_model(cfg, CLASSES, source, ema=False), expected)


@pytest.mark.parametrize("ema", [False, True])
def test_a_dcls_audio_checkpoint_is_converted(tmp_path, ema):
    plain, averaged = _model(0, conv="dcls_gauss"), _model(1, conv="dcls_gauss")
    path = tmp_path / "checkpoint-best.pth"
    torch.save(
        {
            "model": fb_convnext_layout(plain),
            "model_ema": fb_convnext_layout(averaged),
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 59,
            "scaler": {},
            "args": argparse.Namespace(model="convnext_dcls_audio", drop_path=0.4),
        },
        path,
    )
    cfg = _cfg(**{"model.conv": "dcls_gauss"})
    for source_arg in ("dcls-audio", None):  # named, or detected from the entries
        source = open_checkpoint(str(path), source=source_arg)
        assert source.layout == "dcls-audio"
        _assert_weights(build_model(cfg, CLASSES, source, ema=ema), averaged if ema else plain)


def test_a_url_is_fetched_once_and_its_sha256_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOSWEEP_CACHE", str(tmp_path / "cache"))
    expected = _model(4)
    path = tmp_path / "model.safetensors"
    ckpt.save_model_weights(expected, path)
    digest = file_sha256(path)
    with pytest.raises(CheckpointError, match="sha256"):
        open_checkpoint(path.as_uri(), sha256="0" * 64)
    source = open_checkpoint(path.as_uri(), sha256=digest)
    assert source.sha256 == digest and source.path != path  # the cached copy
    assert (tmp_path / "cache" / "checkpoints").is_dir()
    _assert_weights(build_model(_cfg(), CLASSES, source, ema=False), expected)


def test_a_checkpoint_of_another_model_fails_in_one_line_naming_keys_and_shapes(tmp_path):
    path = tmp_path / "other.safetensors"
    ckpt.save_model_weights(_model(0, classes=7), path)
    source = open_checkpoint(str(path))
    with pytest.raises(CheckpointError) as info:
        build_model(_cfg(), CLASSES, source, ema=False)
    message = info.value.one_line()
    assert "head.fc.weight (7, 320) vs (10, 320)" in message and "\n" not in str(info.value)

    with pytest.raises(CheckpointError) as info:
        build_model(_cfg(**{"model.arch": "convformer_atto"}), CLASSES, source, ema=False)
    message = info.value.one_line()
    assert "does not fit convformer_atto/dsc" in message
    assert "missing" in message and "unexpected" in message and "more" in message


def test_the_cli_refuses_a_mismatched_checkpoint_before_ray_starts(tmp_path, capsys):
    from audiosweep.cli import main
    from audiosweep.data import prepare_demo

    data = tmp_path / "data"
    prepare_demo(data, train_clips=4, eval_clips=4, clip_seconds=1.0, seed=0)
    path = tmp_path / "other.safetensors"
    ckpt.save_model_weights(_model(0), path)
    code = main(
        [
            "evaluate",
            str(path),
            "--preset",
            "smoke",
            f"data.path={data}",
            "model.arch=convformer_atto",
            "--no-track",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: checkpoint") and "convformer_atto" in err
    assert not (tmp_path / "report").exists()

    code = main(["evaluate", str(tmp_path / "missing.pt"), "--no-track"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def _evaluation(seed: int = 0, n: int = 60, c: int = 5) -> Evaluation:
    from audiosweep.train.metrics_multilabel import auc_dprime

    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
    targets[:, -1] = 0  # a class without positives: excluded, reported blank
    scores = (rng.random((n, c)) + 0.4 * targets).astype(np.float32)
    t, s = torch.from_numpy(targets), torch.from_numpy(scores)
    metrics = MultiLabel().metrics(t, s)
    ap = metrics.pop("per_class_ap").numpy()
    aucs = auc_dprime(t, s)
    return Evaluation(
        metrics={**metrics, "split": "eval", "ema": False, "tta_views": 0, "workers": 1},
        class_names=[f"class {i}" for i in range(c)],
        per_class={
            "positives": targets.sum(0),
            "ap": ap,
            "auc": aucs["per_class_auc"].numpy(),
            "dprime": aucs["per_class_dprime"].numpy(),
        },
        clip_ids=[f"clip{i:03d}" for i in range(n)],
        scores=scores,
        targets=targets,
    )


def test_report_metrics_and_per_class_csv_equal_sklearn_and_scipy(tmp_path):
    evaluation = _evaluation()
    targets, scores = evaluation.targets[:, :-1], evaluation.scores[:, :-1]
    ap = average_precision_score(targets, scores, average=None)
    auc = roc_auc_score(targets, scores, average=None)
    m = evaluation.metrics
    assert m["eval_map"] == pytest.approx(ap.mean(), abs=1e-12)
    assert m["eval_mean_auc"] == pytest.approx(auc.mean(), abs=1e-12)
    # d' of the mean AUC, and the mean of the per-class d'.
    assert m["eval_dprime"] == pytest.approx(math.sqrt(2) * norm.ppf(auc.mean()), abs=1e-9)
    assert m["eval_mean_dprime"] == pytest.approx((math.sqrt(2) * norm.ppf(auc)).mean(), abs=1e-9)
    assert m["eval_map_excluded_classes"] == 1

    path = tmp_path / "per_class_ap.csv"
    write_per_class(path, evaluation)
    rows = list(csv.DictReader(path.open()))
    assert [r["display_name"] for r in rows] == evaluation.class_names
    np.testing.assert_allclose([float(r["ap"]) for r in rows[:-1]], ap, atol=1e-6)
    np.testing.assert_allclose([float(r["auc"]) for r in rows[:-1]], auc, atol=1e-6)
    np.testing.assert_allclose(
        [float(r["dprime"]) for r in rows[:-1]], math.sqrt(2) * norm.ppf(auc), atol=1e-5
    )
    assert rows[-1]["ap"] == "" and rows[-1]["positives"] == "0"


def test_a_report_is_written_whole_or_not_at_all(tmp_path, run_folder, monkeypatch):
    from audiosweep.errors import UserError
    from audiosweep.evaluate import run as run_module

    source = open_checkpoint(str(run_folder[0]))
    cfg = resolve_eval_config(source, None, [])
    out = tmp_path / "report"
    write_report(out, _evaluation(), source, cfg, save_scores=True)
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["checkpoint_sha256"] == source.sha256 and payload["case"] == cfg.case
    with np.load(out / "scores.npz") as saved:
        assert saved["scores"].shape == (60, 5) and saved["clip_id"][0] == "clip000"
    with pytest.raises(UserError, match="already exists"):
        write_report(out, _evaluation(), source, cfg)

    def broken(path, evaluation):
        path.write_text("index,display_name\n0,half")
        raise OSError("disk full")

    monkeypatch.setattr(run_module, "write_per_class", broken)
    other = tmp_path / "other"
    with pytest.raises(OSError, match="disk full"):
        write_report(other, _evaluation(), source, cfg)
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]  # no temporary left


@pytest.mark.parametrize(("tta", "freq_fraction"), [(0, None), (3, None), (3, 0.125)])
def test_a_replica_predicts_what_the_trials_evaluation_predicts(tta, freq_fraction):
    """The evaluation replica against the training loop's own eval path
    (`ModelInputs.predict`), on the same weights and waveforms; the frequency masks of
    the test-time views may be given as a share of the mel bins."""
    from audiosweep.evaluate.predict import Predictor
    from audiosweep.train.recipe import build_recipe

    cfg = _cfg(
        **{
            "augment.tta_views": tta,
            "augment.freq_mask_fraction": freq_fraction,
            "data.clip_seconds": 2.0,
            "train.amp": "none",
        }
    )
    model = _model(5)
    predictor = Predictor(cfg.to_dict(), CLASSES, [model.state_dict()], tta_views=tta, seed=7)
    pipe = build_recipe(cfg, device=torch.device("cpu"), model=model, train_rows=64, world=1)
    rng = np.random.default_rng(0)
    waveform = (0.1 * rng.standard_normal((3, 64000))).astype(np.float32)
    batch = {"waveform": waveform, "target": np.zeros((3, CLASSES)), "clip_id": ["a", "b", "c"]}
    torch.manual_seed(7)  # the TTA views' masks: the replica seeds the same way
    got = predictor(batch)
    torch.manual_seed(7)
    with torch.no_grad():
        views = pipe.inputs.predict(model.eval(), torch.from_numpy(waveform), tta=tta > 0)
    expected = views["_tta" if tta else ""].numpy()
    np.testing.assert_allclose(got["scores"], expected, rtol=0, atol=1e-6)
    assert list(got["clip_id"]) == ["a", "b", "c"] and got["scores"].shape == (3, CLASSES)


def test_replicas_use_gpus_when_the_cluster_can_have_them_and_fit_a_node(monkeypatch):
    from audiosweep import capacity
    from audiosweep.evaluate.run import EvalOptions, replica_resources

    def cluster(*types):
        monkeypatch.setattr(
            capacity, "cluster_capacity", lambda: capacity.Capacity(list(types), "test")
        )

    paper = load_preset("paper")  # 8 workers × (8 CPUs, 1 GPU), read tasks of 1 CPU
    cluster(capacity.NodeType("head", {"CPU": 2.0}, 1))
    assert replica_resources(paper, EvalOptions()) == (1, 1.0, 0.0)  # a laptop: CPU, fits
    cluster(
        capacity.NodeType("head", {"CPU": 4.0}, 1),
        capacity.NodeType("gpu", {"CPU": 6.0, "GPU": 1.0}, 4),  # none alive yet: counted
    )
    assert replica_resources(paper, EvalOptions()) == (8, 5.0, 1.0)
    assert replica_resources(paper, EvalOptions(workers=2, cpus_per_worker=3)) == (2, 3, 1.0)
