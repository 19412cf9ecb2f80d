"""Carve a validation split from a dataset's train split, stratified over the labels.

Model selection (the best checkpoint, ASHA's stopping, Optuna's objective) should not read the
split the report scores. `carve_validation` moves a fraction of the train rows into a new split
(``val``), chosen by iterative stratification (Sechidis, Tsoumakas, Vlahavas, ECML PKDD 2011):
the rarest label first, each of its rows to the side that still wants most of that label, so
per-class positives follow the fraction as closely as whole rows allow. A class with at least
two positives keeps at least one on each side (asked of the first pass, then repaired by moving
a row whose other labels stay present on the side it leaves). The choice depends only on the
rows' ids and labels and the seed.

The rows are copied into new shards under a staging folder; then the manifest is removed, the
new folders replace the old, and the new manifest is written: an interruption leaves a folder
that does not read as a complete dataset, never a half-split one that does.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .fingerprint import fingerprint
from .schema import MANIFEST_NAME, DatasetError, DatasetInfo, write_json_atomic
from .writer import Row, SplitWriter

STAGING = ".split-staging"


def stratified_choice(
    labels: list[tuple[int, ...]], num_classes: int, fraction: float, seed: int
) -> np.ndarray:
    """Boolean mask of the rows chosen for the ``fraction`` side."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # the seed decides ties and the order rows are taken in
    positives = np.zeros(num_classes, dtype=np.int64)
    for row in labels:
        positives[list(row)] += 1
    # Desired positives per side and class; a class with >= 2 positives wants one on each.
    want_val = positives * fraction
    two_or_more = positives >= 2
    want_val[two_or_more] = np.clip(want_val[two_or_more], 1, positives[two_or_more] - 1)
    want = np.stack([positives - want_val, want_val]).astype(np.float64)
    want_rows = np.array([n * (1 - fraction), n * fraction])
    side = np.full(n, -1, dtype=np.int8)
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for i in order:
        for k in labels[i]:
            by_class[k].append(int(i))
    remaining = positives.copy()
    while True:
        open_classes = np.flatnonzero(remaining > 0)
        if open_classes.size == 0:
            break
        k = int(open_classes[np.argmin(remaining[open_classes])])
        for i in by_class[k]:
            if side[i] >= 0:
                continue
            w = want[:, k]
            if w[0] != w[1]:
                s = int(np.argmax(w))
            elif want_rows[0] != want_rows[1]:
                s = int(np.argmax(want_rows))
            else:
                s = int(rng.integers(2))
            side[i] = s
            want[s, list(labels[i])] -= 1
            want_rows[s] -= 1
            remaining[list(labels[i])] -= 1
    for i in order:  # rows without labels (none in a validated dataset): by row count
        if side[i] < 0:
            s = int(np.argmax(want_rows))
            side[i] = s
            want_rows[s] -= 1
    _repair(side, labels, num_classes)
    return side == 1


def _repair(side: np.ndarray, labels: list[tuple[int, ...]], num_classes: int) -> None:
    """Move single rows so that every class with >= 2 positives has one on each side."""
    counts = np.zeros((2, num_classes), dtype=np.int64)
    for i, row in enumerate(labels):
        counts[side[i], list(row)] += 1
    for k in range(num_classes):
        for empty in (0, 1):
            full = 1 - empty
            if counts[empty, k] > 0 or counts[full, k] < 2:
                continue
            for i, row in enumerate(labels):
                if side[i] != full or k not in row:
                    continue
                if all(counts[full, j] >= 2 for j in row):  # leaves every label behind too
                    side[i] = empty
                    counts[full, list(row)] -= 1
                    counts[empty, list(row)] += 1
                    break


def carve_validation(
    dataset_dir: str | os.PathLike,
    *,
    fraction: float,
    seed: int = 0,
    source_split: str = "train",
    val_split: str = "val",
    overwrite: bool = False,
) -> dict[str, dict[str, Any]]:
    """Move a stratified ``fraction`` of ``source_split``'s rows into ``val_split``; returns
    both splits' new manifest entries."""
    if not 0 < fraction < 1:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {fraction}")
    info = DatasetInfo.load(dataset_dir)
    root = info.path
    source = info.split(source_split)
    # Carving again starts from the rows of both: the earlier validation rows go back in.
    paths = info.shard_paths(source_split)
    if val_split in info.splits:
        if not overwrite:
            raise DatasetError(
                f"{root} already has a split {val_split!r}; pass --overwrite to carve it again"
            )
        if (info.splits[val_split].get("carved_from") or {}).get("split") != source_split:
            raise DatasetError(
                f"{root}: split {val_split!r} was not carved from {source_split!r}; "
                "name the new split otherwise (--name)"
            )
        paths += info.shard_paths(val_split)
    ids: list[str] = []
    row_labels: list[tuple[int, ...]] = []
    for path in paths:
        table = pq.read_table(path, columns=["clip_id", "labels"])
        ids += table.column("clip_id").to_pylist()
        row_labels += [tuple(x) for x in table.column("labels").to_pylist()]
    if len(ids) < 2:
        raise DatasetError(f"{root}: split {source_split!r} has {len(ids)} rows; nothing to carve")
    chosen = stratified_choice(row_labels, info.num_classes, fraction, seed)
    if not chosen.any() or chosen.all():
        raise DatasetError(
            f"{root}: a fraction of {fraction} of {len(ids)} rows leaves one side empty; "
            "choose a fraction nearer 0.5"
        )
    staging = root / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    shard_bytes = max(int(s["bytes"]) for s in source["shards"])
    writers = {
        side: SplitWriter(
            staging,
            name,
            num_classes=info.num_classes,
            shard_bytes=shard_bytes,
            single_label=info.task == "singlelabel",
        )
        for side, name in ((False, source_split), (True, val_split))
    }
    index = 0
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            cols = batch.to_pydict()
            for clip_id, audio, rate, frames, labels in zip(
                cols["clip_id"],
                cols["audio"],
                cols["sample_rate"],
                cols["num_frames"],
                cols["labels"],
                strict=True,
            ):
                writers[bool(chosen[index])].add(Row(clip_id, audio, rate, frames, tuple(labels)))
                index += 1
    kept = writers[False].close()
    kept["rejected"] = source.get("rejected", [])
    kept["rejected_counts"] = source.get("rejected_counts", {})
    carved = writers[True].close()
    carved.update(
        rejected=[],
        rejected_counts={},
        carved_from={"split": source_split, "fraction": fraction, "seed": seed},
    )
    manifest = dict(info.manifest)
    splits = {**manifest["splits"], source_split: kept, val_split: carved}
    manifest["splits"] = {name: splits[name] for name in sorted(splits)}
    manifest["fingerprint"] = fingerprint(info.mids, info.sample_rate, manifest["splits"])
    # From here until the new manifest is written the folder does not read as complete.
    (root / MANIFEST_NAME).unlink()
    for name in (source_split, val_split):
        old = root / name
        if old.exists():
            shutil.rmtree(old)
        (staging / name).rename(old)
    write_json_atomic(root / MANIFEST_NAME, manifest)
    shutil.rmtree(staging, ignore_errors=True)
    return {source_split: kept, val_split: carved}


def split_report(entries: dict[str, dict[str, Any]], class_names: list[str]) -> str:
    """Rows per side, and the classes with >= 2 positives that one side still lacks."""
    (train_name, train), (val_name, val) = entries.items()
    a = np.asarray(train["positives_per_class"])
    b = np.asarray(val["positives_per_class"])
    lacking = [class_names[k] for k in np.flatnonzero((a + b >= 2) & ((a == 0) | (b == 0)))]
    line = f"{val_name}: {val['rows']} clips carved from {train_name} ({train['rows']} left)"
    if lacking:
        line += f"; {len(lacking)} class(es) on one side only: {', '.join(lacking[:5])}"
    return line
