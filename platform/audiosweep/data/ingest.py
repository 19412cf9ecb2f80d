"""The ingest loop shared by every source: dedupe, convert (in worker processes on this
machine, or in Ray tasks across a cluster), write rows, record rejections, show progress,
summarise."""

from __future__ import annotations

import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypedDict

import pyarrow.parquet as pq
from tqdm import tqdm

from .official import coverage, format_coverage, split_clip_ids
from .rows import ClipSource, RowSpec, convert
from .schema import DEFAULT_CLIP_SECONDS, DEFAULT_SAMPLE_RATE, DatasetError, LabelIndex
from .writer import DatasetWriter, Rejection, Row

SHOWN_REJECTIONS = 10


class IngestOptions(TypedDict, total=False):
    """How every source is ingested: `ingest`'s keyword arguments, with its defaults."""

    sample_rate: int
    clip_seconds: float
    shard_mb: float
    audio_format: str
    overwrite: bool
    workers: int
    progress: bool | None


class ClusterIngestOptions(IngestOptions, total=False):
    """`IngestOptions` and those of sources that can be ingested on a Ray cluster."""

    address: str | None
    shard_clips: int | None


@dataclass
class SplitInput:
    """One split's clips (lazy; a source may yield a ready rejection) and their count if known."""

    sources: Iterable[ClipSource | Rejection]
    total: int | None = None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map`` in input order over a process pool, with a bounded number of clips in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    window = workers * 8
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker
    ) as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def mark_duplicates(
    sources: Iterable[ClipSource | Rejection], split: str, seen: dict[str, str]
) -> Iterator[ClipSource | Rejection]:
    """Sources with ids seen before (``seen``: id -> split) turned into rejections, in input
    order; the first occurrence of an id wins."""
    for src in sources:
        if isinstance(src, ClipSource):
            if src.clip_id in seen:
                other = seen[src.clip_id]
                where = "earlier in this split" if other == split else f"in split {other!r}"
                src = Rejection(src.clip_id, "duplicate", f"clip id already {where}")
            else:
                seen[src.clip_id] = split
        yield src


def _existing_ids(writer: DatasetWriter) -> dict[str, str]:
    seen: dict[str, str] = {}
    for split, paths in writer.kept_shards().items():
        for path in paths:
            for clip_id in pq.read_table(path, columns=["clip_id"]).column("clip_id").to_pylist():
                seen[clip_id] = split
    return seen


def ingest(
    out_dir: str | os.PathLike,
    splits: dict[str, SplitInput],
    *,
    labels: LabelIndex,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    shard_mb: float = 256,
    audio_format: str = "flac",
    overwrite: bool = False,
    workers: int = 1,
    source: dict[str, Any] | None = None,
    progress: bool | None = None,
    task: str = "multilabel",
    address: str | None = None,
    shard_clips: int | None = None,
    official: dict[str, str | os.PathLike] | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``splits`` into the dataset at ``out_dir``; return their manifest entries.

    Bad clips are skipped and recorded with a reason; a clip id seen before (in this
    ingest or in a split the dataset keeps) is a ``duplicate``. With ``address`` (a Ray
    address, or "auto") the clips are converted and the shards written by Ray tasks across
    the cluster, ``shard_clips`` input clips per shard, and an interrupted run resumes.
    ``official`` maps a split to the official segments CSV its coverage is recorded against.
    """
    official_lists = _read_official(official or {}, splits)
    spec = RowSpec(
        sample_rate=int(sample_rate), audio_format=audio_format, label_ids=labels.index_of()
    )
    distributed = address is not None
    if shard_clips is not None and shard_clips < 1:
        raise DatasetError(f"clips per shard must be at least 1, got {shard_clips}")
    if distributed:
        from audiosweep.ray_cluster import connect

        from .ingest_ray import DEFAULT_CLIP_BYTES_PER_SECOND

        connect(address)
        if shard_clips is None:
            per_clip = DEFAULT_CLIP_BYTES_PER_SECOND * clip_seconds * sample_rate / 32000
            shard_clips = max(1, int(shard_mb * 1024 * 1024 / per_clip))
    with DatasetWriter(
        out_dir,
        labels=labels,
        splits=list(splits),
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        shard_mb=shard_mb,
        overwrite=overwrite,
        source=source,
        task=task,
        resume=distributed,
    ) as writer:
        seen = _existing_ids(writer)
        for split, given in splits.items():
            bar = tqdm(
                total=given.total,
                desc=f"prepare {split}",
                unit="clip",
                disable=None if progress is None else not progress,
                file=sys.stderr,
            )
            items = mark_duplicates(given.sources, split, seen)
            if distributed:
                from .ingest_ray import write_split_on_ray

                entry = write_split_on_ray(
                    writer, split, items, spec, shard_clips=shard_clips, on_clips=bar.update
                )
                writer.set_entry(split, entry)
                bar.close()
                continue
            out = writer.split(split)
            for result in _ordered_map(partial(convert, spec=spec), items, workers):
                if isinstance(result, Row):
                    out.add(result)
                else:
                    out.reject(result)
                bar.update()
            bar.close()
            writer.close_split(split)
        for split, (name, ids) in official_lists.items():
            entry = writer.entries[split]
            entry["coverage"] = coverage(split_clip_ids(writer.root, entry), ids, name)
        return dict(writer.entries)


def _read_official(
    official: dict[str, str | os.PathLike], splits: dict[str, SplitInput]
) -> dict[str, tuple[str, list[str]]]:
    """Each split's official list (CSV name, ids), read before anything is written."""
    from .official import official_ids

    unknown = sorted(set(official) - set(splits))
    if unknown:
        raise DatasetError(
            f"official segment list(s) given for split(s) {', '.join(unknown)} that this "
            f"ingest does not write ({', '.join(splits)})"
        )
    return {split: (Path(csv).name, official_ids(csv)) for split, csv in official.items()}


def rejection_summary(entries: dict[str, dict[str, Any]], shown: int = SHOWN_REJECTIONS) -> str:
    """Rows kept and rejected per split, by reason, with the first few rejected clips."""
    lines = []
    for split, entry in entries.items():
        rejected = entry["rejected"]
        counts = Counter(r["reason"] for r in rejected)
        by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
        lines.append(
            f"{split}: {entry['rows']} clips written, {len(rejected)} rejected"
            + (f" ({by_reason})" if rejected else "")
        )
        if "coverage" in entry:
            lines.append(format_coverage(split, entry["coverage"]).strip())
        for r in rejected[:shown]:
            lines.append(f"  {r['reason']:<13} {r['clip_id']}: {r['detail']}")
        if len(rejected) > shown:
            lines.append(f"  ... {len(rejected) - shown} more in manifest.json")
    return "\n".join(lines)


def resolve_labels(path: str | os.PathLike | None) -> LabelIndex:
    from .schema import default_labels_path

    return LabelIndex.read(Path(path) if path else default_labels_path())
