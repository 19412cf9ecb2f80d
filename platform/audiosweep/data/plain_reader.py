"""A dataset split read without Ray: a pyarrow + soundfile loop over the shards."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .decode import decode_rows
from .schema import DatasetInfo

COLUMNS = ["clip_id", "audio", "sample_rate", "labels"]


def _decode(table: pa.Table, info: DatasetInfo, frames: int) -> dict[str, np.ndarray]:
    waveform, target = decode_rows(
        table.column("audio").to_pylist(),
        table.column("sample_rate").to_pylist(),
        table.column("labels").to_pylist(),
        sample_rate=info.sample_rate,
        frames=frames,
        num_classes=info.num_classes,
    )
    clip_id = np.asarray(table.column("clip_id").to_pylist(), dtype=object)
    return {"waveform": waveform, "target": target, "clip_id": clip_id}


def iter_numpy_batches(
    dataset_dir: str | os.PathLike,
    split: str,
    *,
    batch_size: int,
    clip_seconds: float | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``waveform`` (B, L) float32, ``target`` (B, C) float32 and ``clip_id`` (B,)
    batches in shard order; the same decoding as :func:`audiosweep.data.read_split`."""
    info = DatasetInfo.load(dataset_dir)
    frames = info.clip_frames(clip_seconds)
    pending: list[pa.RecordBatch] = []
    rows = 0
    for path in info.shard_paths(split):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=COLUMNS):
            pending.append(batch)
            rows += batch.num_rows
            while rows >= batch_size:
                table = pa.Table.from_batches(pending)
                yield _decode(table.slice(0, batch_size), info, frames)
                rest = table.slice(batch_size)
                pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield _decode(pa.Table.from_batches(pending), info, frames)
