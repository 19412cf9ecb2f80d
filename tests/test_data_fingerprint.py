"""The dataset fingerprint changes when one clip or one label changes and not when the same
rows are cut into other shards; each split's content digest follows its documented
definition (recomputed here with hashlib from the shards' rows)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from audiosweep.data import DatasetInfo, LabelIndex, default_labels_path
from audiosweep.data.ingest import SplitInput, ingest
from audiosweep.data.rows import ClipSource

SR = 16000
LABELS = LabelIndex.read(default_labels_path())


def _flac(freq: float) -> bytes:
    t = np.arange(SR // 4) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format="FLAC")
    return buf.getvalue()


CLIPS = [(f"clip{i:02d}", _flac(200 + 37 * i), (LABELS.mids[i], LABELS.mids[50])) for i in range(8)]


def _prepare(out, clips=CLIPS, shard_mb: float = 256) -> DatasetInfo:
    def sources(rows):
        return SplitInput([ClipSource(c, audio, mids) for c, audio, mids in rows])

    ingest(
        out,
        {"train": sources(clips[:6]), "eval": sources(clips[6:])},
        labels=LABELS,
        sample_rate=SR,
        shard_mb=shard_mb,
        progress=False,
    )
    return DatasetInfo.load(out)


def test_resharding_keeps_the_fingerprint(tmp_path):
    one = _prepare(tmp_path / "one")
    many = _prepare(tmp_path / "many", shard_mb=1e-6)  # one clip per shard
    assert len(one.shard_paths("train")) == 1 and len(many.shard_paths("train")) == 6
    assert one.fingerprint == many.fingerprint and len(one.fingerprint) == 64


def test_one_clip_or_one_label_changes_the_fingerprint(tmp_path):
    base = _prepare(tmp_path / "base").fingerprint
    relabelled = list(CLIPS)
    clip_id, audio, mids = relabelled[2]
    relabelled[2] = (clip_id, audio, (mids[0], LABELS.mids[51]))
    dropped = CLIPS[:3] + CLIPS[4:]
    reencoded = list(CLIPS)
    reencoded[7] = (CLIPS[7][0], _flac(1234), CLIPS[7][2])
    moved = CLIPS[:5] + [CLIPS[6], CLIPS[5]] + CLIPS[7:]  # clip05 from train to eval
    prints = {
        name: _prepare(tmp_path / name, clips).fingerprint
        for name, clips in (
            ("relabelled", relabelled),
            ("dropped", dropped),
            ("reencoded", reencoded),
            ("moved", moved),
        )
    }
    assert base not in prints.values() and len(set(prints.values())) == len(prints)


def test_content_digest_follows_its_definition(tmp_path):
    info = _prepare(tmp_path / "ds", shard_mb=1e-6)
    for split in ("train", "eval"):
        total = 0
        for path in info.shard_paths(split):
            for row in pq.read_table(path).to_pylist():
                labels = ",".join(str(k) for k in sorted(row["labels"]))
                inner = hashlib.sha256(row["audio"]).digest()
                text = row["clip_id"].encode() + b"\0" + labels.encode() + b"\0" + inner
                total += int.from_bytes(hashlib.sha256(text).digest(), "big")
        assert info.splits[split]["content_digest"] == f"{total % (1 << 256):064x}"
