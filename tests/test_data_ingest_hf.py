"""`prepare hf`: Parquet files laid out like the Hugging Face AudioSet dataset."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from audiosweep.cli import main
from audiosweep.data import DatasetInfo, LabelIndex, default_labels_path, verify
from audiosweep.data.ingest_hf import prepare_hf

SR = 16000
SPEECH, MUSIC, DOG = "/m/09x0r", "/m/04rlf", "/m/0bt9lr"

HF_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("labels", pa.list_(pa.string())),
        ("human_labels", pa.list_(pa.string())),
    ]
)


def _flac(seconds: float, sr: int, channels: int, freq: float) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    wave = np.stack([0.4 * np.sin(2 * np.pi * freq * t)] * channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="FLAC")
    return buf.getvalue()


def _write_hf(path, rows) -> None:
    table = pa.Table.from_pylist(
        [
            {
                "video_id": vid,
                "audio": {"bytes": data, "path": f"{vid}.flac"},
                "labels": labels,
                "human_labels": ["whatever"] * len(labels),
            }
            for vid, data, labels in rows
        ],
        schema=HF_SCHEMA,
    )
    pq.write_table(table, path)


def _mid_index() -> dict[str, int]:
    return {m: i for i, m in enumerate(LabelIndex.read(default_labels_path()).mids)}


def test_hf_layout_ingest(tmp_path):
    src = tmp_path / "hf"
    src.mkdir()
    _write_hf(
        src / "bal_train00.parquet",
        [
            ("vidA", _flac(1.0, 48000, 2, 440), [SPEECH, MUSIC]),
            ("vidB", _flac(0.5, SR, 1, 220), [DOG]),
            ("vidC", None, [DOG]),
            ("vidD", b"not audio at all" * 10, [MUSIC]),
        ],
    )
    _write_hf(
        src / "bal_train01.parquet",
        [("vidE", _flac(1.0, 44100, 1, 330), [MUSIC]), ("vidA", _flac(1.0, SR, 1, 440), [SPEECH])],
    )
    out = tmp_path / "ds"
    entries = prepare_hf(
        out,
        parquet=str(src / "bal_train*.parquet"),
        split="train",
        labels=LabelIndex.read(default_labels_path()),
        sample_rate=SR,
        progress=False,
    )
    assert {(r["clip_id"], r["reason"]) for r in entries["train"]["rejected"]} == {
        ("vidC", "missing"),
        ("vidD", "corrupt"),
        ("vidA", "duplicate"),
    }
    info = DatasetInfo.load(out)
    assert info.rows("train") == 3
    index = _mid_index()
    rows = {
        r["clip_id"]: r for p in info.shard_paths("train") for r in pq.read_table(p).to_pylist()
    }
    assert set(rows) == {"vidA", "vidB", "vidE"}
    assert rows["vidA"]["labels"] == sorted([index[SPEECH], index[MUSIC]])
    assert rows["vidE"]["labels"] == [index[MUSIC]]
    for clip_id, seconds in (("vidA", 1.0), ("vidB", 0.5), ("vidE", 1.0)):
        wave, rate = sf.read(io.BytesIO(rows[clip_id]["audio"]))
        assert rate == SR and wave.ndim == 1
        assert rows[clip_id]["num_frames"] == len(wave) == int(seconds * SR)
    # Already mono FLAC at the dataset rate: stored as given, not re-encoded.
    original_b = pq.read_table(src / "bal_train00.parquet").column("audio").to_pylist()[1]["bytes"]
    assert rows["vidB"]["audio"] == original_b
    assert verify(out, progress=False).ok


def test_hf_second_split_joins_the_dataset(tmp_path, capsys):
    src = tmp_path / "hf"
    src.mkdir()
    _write_hf(src / "train.parquet", [("t1", _flac(0.5, SR, 1, 300), [SPEECH])])
    _write_hf(
        src / "eval.parquet",
        [("e1", _flac(0.5, SR, 1, 300), [DOG]), ("t1", _flac(0.5, SR, 1, 300), [DOG])],
    )
    out = tmp_path / "ds"
    common = ["--out", str(out), "--sample-rate", str(SR), "--no-progress"]
    assert (
        main(
            ["prepare", "hf", "--parquet", str(src / "train.parquet"), "--split", "train", *common]
        )
        == 0
    )
    assert (
        main(["prepare", "hf", "--parquet", str(src / "eval.parquet"), "--split", "eval", *common])
        == 0
    )
    info = DatasetInfo.load(out)
    assert (info.rows("train"), info.rows("eval")) == (1, 1)
    assert info.manifest["source"]["files"] == {
        "train": ["train.parquet"],
        "eval": ["eval.parquet"],
    }
    # The eval copy of a train clip would leak: rejected as a duplicate across splits.
    assert info.splits["eval"]["rejected"][0]["clip_id"] == "t1"
    assert "in split 'train'" in info.splits["eval"]["rejected"][0]["detail"]
    assert (
        main(["prepare", "hf", "--parquet", str(src / "eval.parquet"), "--split", "eval", *common])
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err
