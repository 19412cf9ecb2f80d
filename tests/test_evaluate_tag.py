"""`audiosweep tag`: recordings of any format, rate, channel count and length, windowed and scored
as `evaluate` scores a clip; an unreadable file is reported and the rest tagged."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audiosweep.config import load_preset
from audiosweep.data import DatasetInfo
from audiosweep.evaluate.tag import window_starts
from audiosweep.models import create_model_from_config
from audiosweep.train.checkpoint import save_model_weights


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, smoke_dataset) -> Path:
    """A run folder as a trial leaves it (config.yaml + model.safetensors), 10 s windows."""
    folder = tmp_path_factory.mktemp("runs") / "smoke-run"
    folder.mkdir()
    cfg = load_preset("smoke").with_overrides(
        {"data.path": str(smoke_dataset), "data.clip_seconds": 10.0, "data.task": "multilabel"}
    )
    torch.manual_seed(0)
    model = create_model_from_config(cfg, DatasetInfo.load(smoke_dataset).num_classes)
    save_model_weights(model, folder / "model.safetensors")
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    return folder


def _write(path: Path, seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wave = (0.1 * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)
    sf.write(path, wave, rate)
    return wave


@pytest.mark.parametrize(
    ("length", "window", "hop", "expected"),
    [
        (5, 10, 5, [0]),  # shorter than a window: one, padded
        (10, 10, 5, [0]),
        (20, 10, 5, [0, 5, 10]),
        (23, 10, 5, [0, 5, 10, 13]),  # the last window ends with the recording
        (23, 10, 20, [0, 13]),
    ],
)
def test_window_starts(length, window, hop, expected) -> None:
    assert window_starts(length, window, hop) == expected


def test_tags_any_recording_reports_a_corrupt_one_and_writes_one_row_per_window(
    tmp_path, run_folder, capfd
) -> None:
    from audiosweep.cli import main

    rec = tmp_path / "recordings"
    rec.mkdir()
    _write(rec / "long.wav", 37.0, 44_100, 2, 0)
    _write(rec / "short.flac", 0.5, 16_000, 1, 1)
    _write(rec / "clip.mp3", 3.0, 22_050, 1, 2)
    (rec / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    out = tmp_path / "tags.csv"
    plot = tmp_path / "timeline.png"

    code = main(
        ["tag", str(rec), "--model", str(run_folder), "--out", str(out), "--top-k", "3"]
        + ["--plot", str(plot)]
    )
    captured = capfd.readouterr()
    assert code == 1  # one file could not be read: said, and the others still tagged
    assert "skipped" in captured.err and "broken.wav" in captured.err
    tagged = [line for line in captured.out.splitlines() if " windows): " in line]
    assert sorted(Path(line.split(" (")[0]).name for line in tagged) == [
        "clip.mp3",
        "long.wav",
        "short.flac",
    ]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    per_file = {
        name: [r for r in rows if Path(r["file"]).name == name]
        for name in ("long.wav", "short.flac", "clip.mp3")
    }
    # 37 s in 10 s windows every 5 s: starts 0, 5, ..., 25 and one ending at 37 s.
    assert len(per_file["long.wav"]) == math.floor((37 - 10) / 5) + 1 + 1
    assert float(per_file["long.wav"][-1]["end_s"]) == pytest.approx(37.0)
    assert len(per_file["short.flac"]) == len(per_file["clip.mp3"]) == 1
    names = DatasetInfo.load(
        yaml.safe_load((run_folder / "config.yaml").read_text())["data"]["path"]
    ).class_names
    assert list(rows[0])[3:] == list(names)
    for name in ("long", "short", "clip"):
        assert (tmp_path / f"timeline-{name}.png").stat().st_size > 0


def test_a_clip_at_the_models_rate_scores_as_evaluate_scores_it(tmp_path, run_folder) -> None:
    from audiosweep.evaluate.predict import Predictor
    from audiosweep.evaluate.source import weights_of
    from audiosweep.evaluate.tag import Tagger
    from audiosweep.evaluate.trained import load_trained

    cfg_dict = yaml.safe_load((run_folder / "config.yaml").read_text())
    rate = cfg_dict["audio"]["sample_rate"]
    wave = _write(tmp_path / "ten.wav", 10.0, rate, 1, 3)[:, 0]

    trained = load_trained(str(run_folder))
    cfg, checkpoint, classes = trained.cfg, trained.checkpoint, trained.num_classes
    assert classes == DatasetInfo.load(cfg.data.path).num_classes
    tagger = Tagger.build(cfg, trained.model, trained.class_names)
    tags = tagger.tag_file(tmp_path / "ten.wav", hop=5.0)
    assert len(tags.starts) == 1

    # `evaluate`'s model replica, given the same weights and the decoded clip.
    replica = Predictor(cfg.to_dict(), classes, [weights_of(checkpoint, ema=False)])
    read, _ = sf.read(tmp_path / "ten.wav", dtype="float32")
    expected = replica(
        {"waveform": read[None], "clip_id": ["ten"], "target": np.zeros((1, classes))}
    )
    np.testing.assert_allclose(tags.scores, expected["scores"][0], rtol=0, atol=1e-5)
    assert np.abs(read - wave).max() < 1e-4  # 16-bit WAV of the same samples


def test_a_paper_scale_dcls_run_folder_loads_with_its_shared_positions(tmp_path) -> None:
    """safetensors keeps one name per shared tensor; a stage's blocks share DCLS positions."""
    from audiosweep.evaluate.source import load_into, open_checkpoint

    cfg = load_preset("paper").with_overrides({"model.conv": "dcls_gauss"})
    torch.manual_seed(0)
    trained = create_model_from_config(cfg, 10)
    save_model_weights(trained, tmp_path / "model.safetensors")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    fresh = create_model_from_config(cfg, 10)
    load_into(fresh, open_checkpoint(str(tmp_path)), ema=False)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.integration
def test_tagging_on_ray_gives_the_in_process_scores(tmp_path, run_folder, ray_client, capfd):
    """A folder tagged by Ray Data replicas: the same scores as in process, in file order, and
    the unreadable file reported while the others are tagged."""
    from audiosweep.cli import main

    rec = tmp_path / "recordings"
    rec.mkdir()
    _write(rec / "a.wav", 12.0, 44_100, 2, 4)
    _write(rec / "b.flac", 0.7, 8_000, 1, 5)
    _write(rec / "c.wav", 10.0, 16_000, 1, 6)
    (rec / "d-broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    outputs = {}
    for mode in ("--local", "--ray"):
        out = tmp_path / f"tags{mode}.json"
        args = ["tag", str(rec), "--model", str(run_folder), "--out", str(out), mode]
        # On Ray: the fixture's driver, connected to the session's head (and shut down after).
        code = main(args)
        err = capfd.readouterr().err
        assert code == 1 and "d-broken.wav" in err, err
        outputs[mode] = json.loads(out.read_text())
    local, on_ray = outputs["--local"], outputs["--ray"]
    assert [Path(f["file"]).name for f in on_ray] == ["a.wav", "b.flac", "c.wav"]
    for a, b in zip(local, on_ray, strict=True):
        assert a["file"] == b["file"] and len(a["windows"]) == len(b["windows"])
        np.testing.assert_allclose(
            [w["scores"] for w in b["windows"]], [w["scores"] for w in a["windows"]], atol=1e-6
        )


def test_a_reference_checkpoint_tags_with_source_and_preset(tmp_path, capfd) -> None:
    """`--model FILE --source dcls-audio --preset P`: the converted weights tag a recording as
    the same model built from those weights scores it."""
    import argparse

    from audiosweep.cli import main
    from audiosweep.evaluate.tag import Tagger
    from checkpoint_layouts import fb_convnext_layout

    cfg = load_preset("smoke").with_overrides(
        {"model.arch": "convnext_atto", "model.conv": "dcls_gauss", "data.path": str(tmp_path)}
    )
    torch.manual_seed(0)
    model = create_model_from_config(cfg, 4).eval()
    path = tmp_path / "checkpoint-best.pth"
    torch.save({"model": fb_convnext_layout(model), "args": argparse.Namespace()}, path)
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},c{i}\n" for i in range(4)))
    _write(tmp_path / "rec.wav", 3.0, cfg.audio.sample_rate, 1, 7)
    out = tmp_path / "tags.json"
    code = main(
        ["tag", str(tmp_path / "rec.wav"), "--model", str(path), "--source", "dcls-audio"]
        + ["--preset", "smoke", "model.arch=convnext_atto", "model.conv=dcls_gauss"]
        + [f"data.path={tmp_path}", "--labels", str(labels), "--out", str(out)]
    )
    assert code == 0, capfd.readouterr().err
    (tagged,) = json.loads(out.read_text())
    expected = Tagger.build(cfg, model, [f"c{i}" for i in range(4)]).tag_file(
        tmp_path / "rec.wav", hop=100.0
    )
    np.testing.assert_allclose(
        tagged["windows"][0]["scores"], expected.window_scores[0], rtol=0, atol=2e-6
    )
