"""Single-label scene data: the embedded scene demo and `prepare scenes` from a folder per class
or a TAU-style meta.csv (small WAV/FLAC files written here)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from audiosweep.cli import main
from audiosweep.data import DatasetInfo
from audiosweep.data.ingest_scenes import prepare_scenes
from audiosweep.data.scene_demo import SCENES, generate_scene_clip, prepare_scene_demo

RATE = 16000


def _rows(info: DatasetInfo, split: str) -> list[dict]:
    rows = []
    for path in info.shard_paths(split):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_scene_demo_is_single_label_balanced_and_regenerable(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        prepare_scene_demo(
            out, train_clips=20, eval_clips=10, clip_seconds=1.0, seed=3, progress=False
        )
    for name in ("manifest.json", "labels.csv", "train/part-00000.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    info = DatasetInfo.load(a)
    assert info.task == "singlelabel" and info.num_classes == len(SCENES) == 10
    assert info.positives("train") == [2] * 10 and info.positives("eval") == [1] * 10
    rows = _rows(info, "eval")
    assert all(len(r["labels"]) == 1 for r in rows)
    clip = generate_scene_clip("eval", 7, seed=3, clip_seconds=1.0)
    row = next(r for r in rows if r["clip_id"] == clip.clip_id)
    assert row["labels"] == [clip.label] == [7]
    stored, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(stored, clip.wave, atol=1.0 / 32768 + 1e-6)


def _tone(seconds: float, freq: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_prepare_from_a_folder_per_class(tmp_path) -> None:
    src = tmp_path / "src"
    for split in ("train", "eval"):
        for k, scene in enumerate(("park", "bus", "airport")):
            folder = src / split / scene / ("sub" if k == 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                # Clip ids are unique across a dataset's splits.
                name = f"{scene}-{split}-{i}.wav"
                sf.write(folder / name, _tone(0.5, 200 * (k + 1), 22050), 22050)
    (src / "train" / "bus" / "notes.txt").write_text("not audio")
    (src / "train" / "park" / "broken.wav").write_bytes(b"RIFF....not a wav")
    prepare_scenes(
        tmp_path / "ds",
        splits={"train": src / "train", "eval": src / "eval"},
        sample_rate=RATE,
        clip_seconds=0.5,
        progress=False,
    )
    info = DatasetInfo.load(tmp_path / "ds")
    assert info.task == "singlelabel"
    assert info.class_names == ["airport", "bus", "park"]  # sorted scene folders
    assert info.rows("train") == 6 and info.rows("eval") == 6
    rejected = info.split("train")["rejected"]
    assert [(r["clip_id"], r["reason"]) for r in rejected] == [("park/broken", "corrupt")]
    labels = {r["clip_id"]: r["labels"] for r in _rows(info, "train")}
    assert labels["airport/sub/airport-train-0"] == [0] and labels["park/park-train-1"] == [2]
    row = next(r for r in _rows(info, "eval") if r["clip_id"] == "bus/bus-eval-0")
    stored, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
    assert rate == RATE and len(stored) == RATE // 2  # resampled from 22.05 kHz


def test_prepare_from_a_tau_style_meta_csv(tmp_path) -> None:
    root = tmp_path / "TAU"
    (root / "audio").mkdir(parents=True)
    names = []
    for i, scene in enumerate(["metro", "tram", "metro", "park"]):
        name = f"audio/{scene}-lisbon-{i}-a.flac"
        sf.write(root / name, _tone(0.25, 300 + 50 * i), RATE, format="FLAC")
        names.append((name, scene))
    setup = root / "evaluation_setup"
    setup.mkdir()
    train = setup / "fold1_train.csv"
    lines = ["filename\tscene_label"] + [f"{n}\t{s}" for n, s in names[:3]]
    lines.append("audio/missing-0-a.flac\tpark")
    train.write_text("\n".join(lines) + "\n")
    evaluate = setup / "fold1_evaluate.csv"  # comma-separated, extra columns
    evaluate.write_text(f"filename,scene_label,identifier\n{names[3][0]},{names[3][1]},lisbon-3\n")
    prepare_scenes(
        tmp_path / "ds",
        splits={"train": train, "eval": evaluate},
        audio_root=root,
        sample_rate=RATE,
        clip_seconds=0.25,
        progress=False,
    )
    info = DatasetInfo.load(tmp_path / "ds")
    assert info.class_names == ["metro", "park", "tram"]
    assert info.rows("train") == 3 and info.rows("eval") == 1
    assert [r["reason"] for r in info.split("train")["rejected"]] == ["missing"]
    train_rows = {r["clip_id"]: r["labels"] for r in _rows(info, "train")}
    assert train_rows == {
        "audio/metro-lisbon-0-a": [0],
        "audio/tram-lisbon-1-a": [2],
        "audio/metro-lisbon-2-a": [0],
    }
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["task"] == "singlelabel"


def test_a_csv_without_the_tau_columns_is_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    bad = tmp_path / "meta.csv"
    bad.write_text("file,label\na.wav,park\n")
    out = tmp_path / "ds"
    code = main(["prepare", "scenes", "--train", str(bad), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no filename and scene_label column" in err[0]
    assert not (out / "manifest.json").exists()
