"""`prepare wds`: webdataset tar shards written here with `tarfile` (members sharing a key
form one sample) ingest with every good sample kept, labels and audio equal to the source,
and every bad sample rejected with its reason."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiosweep.cli import main
from audiosweep.data import DatasetError, DatasetInfo, LabelIndex, default_labels_path, verify
from audiosweep.data.ingest_wds import prepare_wds

SR = 16000
LABELS = LabelIndex.read(default_labels_path())


def _audio(freq: float, fmt: str) -> tuple[bytes, np.ndarray]:
    t = np.arange(SR // 2) / SR
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format=fmt)
    data = buf.getvalue()
    return data, sf.read(io.BytesIO(data), dtype="float32")[0]


def _write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wds")
    good: dict[str, tuple[list[int], np.ndarray]] = {}
    first, second = [], []
    for i in range(3):  # JSON labels as MIDs, FLAC audio
        data, decoded = _audio(300 + 50 * i, "FLAC")
        classes = [0, 20 + i]
        meta = {"labels": [LABELS.mids[k] for k in classes]}
        first.append((f"Yclip{i:02d}-abcd", {"flac": data, "json": json.dumps(meta).encode()}))
        good[f"clip{i:02d}-abcd"] = (classes, decoded)
    data, decoded = _audio(700, "WAV")  # class indices in a .cls member, key in a folder
    second.append(("part/clip10-abcd", {"wav": data, "cls": b"5 17"}))
    good["clip10-abcd"] = ([5, 17], decoded)
    data, decoded = _audio(800, "MP3")  # an id field in the JSON wins over the key
    second.append(("000123", {"mp3": data, "json": b'{"video_id": "clip11-abcd", "label": [3]}'}))
    good["clip11-abcd"] = ([3], decoded)
    bad = {
        "nolabel0000": "no_labels",
        "onlylabels0": "missing",
        "badindex000": "unknown_label",
        "brokenjson0": "corrupt",
        "clip00-abcd": "duplicate",
    }
    second += [
        ("nolabel0000", {"flac": _audio(100, "FLAC")[0]}),
        ("onlylabels0", {"cls": b"4"}),
        ("badindex000", {"flac": _audio(100, "FLAC")[0], "cls": b"9999"}),
        ("brokenjson0", {"flac": _audio(100, "FLAC")[0], "json": b"{not json"}),
        ("Yclip00-abcd", {"flac": _audio(120, "FLAC")[0], "cls": b"1"}),
    ]
    _write_tar(root / "train-000000.tar", first)
    _write_tar(root / "train-000001.tar", second)
    return {"root": root, "good": good, "bad": bad}


def test_wds_shards_ingest_every_good_sample(shards, tmp_path):
    out = tmp_path / "ds"
    entries = prepare_wds(
        out,
        splits={"train": [str(shards["root"] / "train-*.tar")]},
        labels=LABELS,
        sample_rate=SR,
        progress=False,
    )
    assert verify(out).ok, verify(out).problems
    got = {}
    for path in DatasetInfo.load(out).shard_paths("train"):
        for row in pq.read_table(path).to_pylist():
            got[row["clip_id"]] = (row["labels"], sf.read(io.BytesIO(row["audio"]))[0])
    assert sorted(got) == sorted(shards["good"])
    for clip_id, (classes, wave) in shards["good"].items():
        assert got[clip_id][0] == classes, clip_id
        np.testing.assert_allclose(got[clip_id][1], wave, atol=2e-4, err_msg=clip_id)
    assert {r["clip_id"]: r["reason"] for r in entries["train"]["rejected"]} == shards["bad"]


def test_truncated_shard_keeps_the_samples_before_the_damage(shards, tmp_path):
    whole = (shards["root"] / "train-000000.tar").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "ds"
    entries = prepare_wds(out, splits={"train": [str(cut)]}, labels=LABELS, sample_rate=SR)
    reasons = [r["reason"] for r in entries["train"]["rejected"]]
    assert reasons[-1] == "corrupt" and "cut.tar" in entries["train"]["rejected"][-1]["clip_id"]
    assert entries["train"]["rows"] >= 1


def test_cli_wds_and_missing_shards(shards, tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(
        ["prepare", "wds", "--train", str(shards["root"] / "train-000000.tar")]
        + ["--out", str(out), "--sample-rate", str(SR), "--no-progress"]
    )
    assert rc == 0 and DatasetInfo.load(out).rows("train") == 3
    assert "train: 3 clips written, 0 rejected" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="no tar shard files match"):
        prepare_wds(tmp_path / "x", splits={"train": [str(tmp_path / "*.tar")]}, labels=LABELS)
