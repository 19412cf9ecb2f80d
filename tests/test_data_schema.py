"""Schema v1: shard columns, labels.csv, manifest.json, size-bounded shards, DatasetInfo."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiosweep.data import DatasetError, DatasetInfo, LabelIndex, default_labels_path
from audiosweep.data.writer import DatasetWriter, Row

SR = 16000


def _flac(wave: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _rows(n: int, seed: int = 0) -> list[tuple[str, np.ndarray, tuple[int, ...]]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        wave = (0.3 * rng.standard_normal(SR // 2 + 37 * i)).clip(-1, 1).astype(np.float32)
        labels = tuple(sorted(rng.choice(4, size=1 + i % 3, replace=False).tolist()))
        out.append((f"clip-{i:03d}", wave, labels))
    return out


LABELS = LabelIndex(("/x/a", "/x/b", "/x/c", "/x/d"), ("A", "B, with comma", "C", "D"))


def _write(out, rows, *, shard_mb=256.0, splits=("train",)):
    with DatasetWriter(
        out, labels=LABELS, splits=list(splits), sample_rate=SR, clip_seconds=1.0, shard_mb=shard_mb
    ) as writer:
        for split in splits:
            for clip_id, wave, labels in rows:
                writer.split(split).add(Row(clip_id, _flac(wave), SR, len(wave), labels))


def test_schema_round_trip(tmp_path):
    rows = _rows(7)
    _write(tmp_path / "ds", rows)
    ds = tmp_path / "ds"

    table = pq.read_table(ds / "train" / "part-00000.parquet")
    assert table.schema.field("clip_id").type == pa.string()
    assert table.schema.field("audio").type == pa.binary()
    assert table.schema.field("sample_rate").type == pa.int32()
    assert table.schema.field("num_frames").type == pa.int32()
    assert table.schema.field("labels").type == pa.list_(pa.int16())
    assert table.column("clip_id").to_pylist() == [r[0] for r in rows]
    assert table.column("labels").to_pylist() == [list(r[2]) for r in rows]
    assert table.column("num_frames").to_pylist() == [len(r[1]) for r in rows]
    for stored, (_, wave, _) in zip(table.column("audio").to_pylist(), rows, strict=True):
        decoded, rate = sf.read(io.BytesIO(stored), dtype="float32")
        assert rate == SR
        np.testing.assert_allclose(decoded, wave, atol=1.0 / 32768 + 1e-7)

    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["sample_rate"] == SR
    entry = manifest["splits"]["train"]
    assert entry["rows"] == 7
    expected_pos = [sum(k in r[2] for r in rows) for k in range(4)]
    assert entry["positives_per_class"] == expected_pos
    assert entry["rejected"] == []
    (shard,) = entry["shards"]
    data = (ds / shard["file"]).read_bytes()
    assert shard["rows"] == 7
    assert shard["bytes"] == len(data)
    assert shard["sha256"] == hashlib.sha256(data).hexdigest()

    with open(ds / "labels.csv", newline="") as f:
        assert list(csv.reader(f)) == [
            ["index", "mid", "display_name"],
            ["0", "/x/a", "A"],
            ["1", "/x/b", "B, with comma"],
            ["2", "/x/c", "C"],
            ["3", "/x/d", "D"],
        ]

    info = DatasetInfo.load(ds)
    assert info.sample_rate == SR and info.clip_seconds == 1.0 and info.num_classes == 4
    assert info.mids == list(LABELS.mids) and info.class_names == list(LABELS.names)
    assert info.rows("train") == 7 and info.positives("train") == expected_pos
    assert set(info.splits) == {"train"}
    with pytest.raises(DatasetError, match="no split 'eval'"):
        info.rows("eval")


def test_shards_are_size_bounded(tmp_path):
    rows = _rows(12)
    sizes = [len(_flac(w)) for _, w, _ in rows]
    bound_mb = 2.5 * max(sizes) / (1024 * 1024)
    _write(tmp_path / "ds", rows, shard_mb=bound_mb)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) >= 4
    assert sum(s["rows"] for s in shards) == 12
    assert [s["file"] for s in shards] == [
        f"train/part-{i:05d}.parquet" for i in range(len(shards))
    ]
    offset = 0
    for shard in shards:
        table = pq.read_table(tmp_path / "ds" / shard["file"])
        assert table.num_rows == shard["rows"]
        audio_bytes = sum(len(a) for a in table.column("audio").to_pylist())
        assert audio_bytes <= bound_mb * 1024 * 1024
        assert table.column("clip_id").to_pylist() == [
            r[0] for r in rows[offset : offset + shard["rows"]]
        ]
        offset += shard["rows"]
    assert not list((tmp_path / "ds" / "train").glob(".*"))


def test_missing_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(
        DatasetError,
        match=r"not a complete dataset: .*no manifest\.json; an ingest may have been interrupted",
    ):
        DatasetInfo.load(tmp_path / "half")


def test_packaged_audioset_labels():
    path = default_labels_path()
    assert hashlib.md5(path.read_bytes()).hexdigest() == "68c0b5c199d6cc789852b144cc3ab500"
    labels = LabelIndex.read(path)
    assert len(labels) == 527
    assert (labels.mids[0], labels.names[0]) == ("/m/09x0r", "Speech")


def test_label_index_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("index,mid,display_name\n0,/a,A\n2,/b,B\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:3: index 2 out of order"):
        LabelIndex.read(bad)
    bad.write_text("id,name\n0,/a\n")
    with pytest.raises(DatasetError, match="expected header"):
        LabelIndex.read(bad)
