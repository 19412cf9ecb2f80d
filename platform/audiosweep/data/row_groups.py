"""The row-group layout of a split, and each row group's total sampling weight.

Parquet row groups are the smallest unit a reader can fetch on its own, so an epoch is planned
over them: this module lists them (rows per group, from the footers) and, for weighted
sampling, sums the weights of each group's rows from its ``labels`` column. Only the small
``labels`` column is read; per-row values never leave the task that computed them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Files per scan task: a footer and a labels column are a few KB, so a task must cover many
# files to be worth its start-up; below two tasks' worth the scan runs in the caller.
FILES_PER_SCAN_TASK = 16


@dataclass(frozen=True)
class RowGroups:
    """Every row group of a split in file order: ``file[g]`` indexes ``paths``, ``index[g]`` is
    the group's number inside its file. ``weight`` (float64, per group) is the sum of its rows'
    sampling weights, or None when rows are drawn uniformly; ``class_counts`` counts label
    occurrences over all rows (to check against the manifest) when weights were computed."""

    paths: tuple[str, ...]
    file: np.ndarray
    index: np.ndarray
    rows: np.ndarray
    bytes_per_row: float
    weight: np.ndarray | None = None
    class_counts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total_rows(self) -> int:
        return int(self.rows.sum())


def row_weights(labels: pa.Array | pa.ChunkedArray, class_weights: np.ndarray) -> np.ndarray:
    """Per row, the sum of ``class_weights`` over its labels (vectorised over a list column)."""
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    offsets = labels.offsets.to_numpy(zero_copy_only=False)
    values = labels.values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    # Offsets index into the unsliced values: sums as differences of one cumulative sum.
    cumulative = np.concatenate([[0.0], np.cumsum(class_weights[values])])
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def _scan_files(
    paths: Sequence[str], class_weights: np.ndarray | None
) -> tuple[list[np.ndarray], int, np.ndarray | None]:
    """Per file: (group index, rows, weight) columns; total audio bytes; label counts."""
    out: list[np.ndarray] = []
    audio_bytes = 0
    counts = None if class_weights is None else np.zeros(len(class_weights), np.int64)
    for path in paths:
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
        groups = meta.num_row_groups
        table = np.zeros((groups, 3), np.float64)
        for g in range(groups):
            group_meta = meta.row_group(g)
            table[g, 0] = g
            table[g, 1] = group_meta.num_rows
            audio_bytes += group_meta.total_byte_size
            if class_weights is not None:
                labels = parquet.read_row_group(g, columns=["labels"]).column("labels")
                table[g, 2] = row_weights(labels, class_weights).sum()
                flat = labels.combine_chunks().flatten().to_numpy(zero_copy_only=False)
                counts += np.bincount(flat.astype(np.int64), minlength=len(class_weights))
        out.append(table)
    return out, audio_bytes, counts


def scan_row_groups(
    paths: Sequence[str | os.PathLike],
    class_weights: np.ndarray | None = None,
    *,
    read_cpus: float = 1.0,
) -> RowGroups:
    """List the row groups of ``paths`` (in order) and, given ``class_weights``, their weights.

    With Ray initialised and many files, the scan runs as Ray tasks of
    :data:`FILES_PER_SCAN_TASK` files each, so a 2M-clip split is not read by one process.
    """
    paths = tuple(str(p) for p in paths)
    chunks = [paths[i : i + FILES_PER_SCAN_TASK] for i in range(0, len(paths), FILES_PER_SCAN_TASK)]
    if len(chunks) > 1 and _ray_ready():
        import ray

        scan = ray.remote(num_cpus=read_cpus)(_scan_files)
        results = ray.get([scan.remote(chunk, class_weights) for chunk in chunks])
    else:
        results = [_scan_files(chunk, class_weights) for chunk in chunks]
    tables = [t for files, _, _ in results for t in files]
    file = np.concatenate([np.full(len(t), i, np.int32) for i, t in enumerate(tables)])
    stacked = np.concatenate(tables) if tables else np.zeros((0, 3))
    rows = stacked[:, 1].astype(np.int64)
    total_bytes = sum(b for _, b, _ in results)
    counts = None
    if class_weights is not None:
        counts = np.sum([c for _, _, c in results], axis=0).astype(np.int64)
    return RowGroups(
        paths=paths,
        file=file,
        index=stacked[:, 0].astype(np.int32),
        rows=rows,
        bytes_per_row=total_bytes / max(1, int(rows.sum())),
        weight=None if class_weights is None else stacked[:, 2].copy(),
        class_counts=counts,
    )


def _ray_ready() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()
