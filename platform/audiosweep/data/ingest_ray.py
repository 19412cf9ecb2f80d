"""Ingest on a Ray cluster: one task per shard, shards written in parallel, resumable.

The driver reads the sources and marks duplicates (in input order, as the local ingest does),
cuts the stream into chunks of ``shard_clips`` clips and sends each chunk to a task, which
converts its clips and writes shard ``part-<chunk>.parquet`` (temporary name, then rename),
then a record of what it wrote under ``.ingest/<split>/``. A chunk whose record matches its
input (same clips, same audio files or bytes, same row spec) and whose shard is in place is
not sent again, so an interrupted ingest re-run finishes the missing shards only. Shards hold
the same rows in the same order as a local ingest of the same input; only the cut between
shards differs. Every node must see the output folder (and the audio files) at the same path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .fingerprint import add_digests, as_hex
from .rows import ClipSource, RowSpec, convert
from .schema import REJECT_REASONS, write_json_atomic
from .writer import DatasetWriter, Rejection, Row, SplitWriter

# Bytes of FLAC per second of 32 kHz mono audio, for the default clips per shard (measured on
# AudioSet-like clips FLAC compresses 16-bit PCM to about 60 %).
DEFAULT_CLIP_BYTES_PER_SECOND = 38_400
# Chunks in flight per CPU the cluster has now: enough queued work for the autoscaler to see
# demand for more nodes, little enough that pending audio does not crowd the object store.
IN_FLIGHT_PER_CPU = 2
MIN_IN_FLIGHT = 8


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _audio_key(audio: bytes | Path | None) -> Any:
    """What identifies a clip's audio cheaply: a file's path, size and mtime; bytes' sha256."""
    if audio is None:
        return None
    if isinstance(audio, (str, os.PathLike)):
        try:
            st = os.stat(audio)
        except OSError:
            return [str(audio), None]
        return [str(audio), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(bytes(audio)).hexdigest()


def chunk_fingerprint(items: list[ClipSource | Rejection], spec_key: str) -> str:
    """Identifies a chunk's input: equal fingerprints give equal shards."""
    h = hashlib.sha256(spec_key.encode())
    for item in items:
        if isinstance(item, Rejection):
            key = ["rejected", item.clip_id, item.reason, item.detail]
        else:
            key = [item.clip_id, list(item.mids), item.where, _audio_key(item.audio)]
        h.update(json.dumps(key).encode())
        h.update(b"\n")
    return h.hexdigest()


def _spec_key(spec: RowSpec, row_group_rows: int) -> str:
    return json.dumps(
        [spec.sample_rate, spec.audio_format, sorted(spec.label_ids.items()), row_group_rows]
    )


def write_chunk(
    root: str,
    split: str,
    index: int,
    items: list[ClipSource | Rejection],
    spec: RowSpec,
    *,
    num_classes: int,
    row_group_rows: int,
    record: str,
    fingerprint: str,
) -> dict[str, Any]:
    """Convert one chunk into shard ``index`` of ``split`` (none when every clip is rejected),
    then record it; returns the chunk's manifest entry. Runs in a Ray task."""
    import torch

    torch.set_num_threads(1)
    writer = SplitWriter(
        Path(root),
        split,
        num_classes=num_classes,
        shard_bytes=1 << 62,  # the chunk is the shard
        row_group_rows=row_group_rows,
        first_index=index,
    )
    try:
        for item in items:
            result = convert(item, spec)
            if isinstance(result, Row):
                writer.add(result)
            else:
                writer.reject(result)
        entry = writer.close()
    except BaseException:
        writer.abort()
        raise
    entry["fingerprint"] = fingerprint
    Path(record).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(record), entry)
    return entry


def _finished(record: Path, fingerprint: str, root: Path) -> dict[str, Any] | None:
    """The recorded entry of a chunk done before with this input, its shard in place."""
    try:
        entry = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if entry.get("fingerprint") != fingerprint or "content_digest" not in entry:
        return None
    for shard in entry.get("shards", []):
        path = root / shard["file"]
        if not path.is_file() or path.stat().st_size != shard["bytes"]:
            return None
    return entry


def merge_entries(parts: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """One split's manifest entry from its chunks' entries, in chunk order."""
    positives = [0] * num_classes
    for part in parts:
        positives = [a + b for a, b in zip(positives, part["positives_per_class"], strict=True)]
    rejected = [r for part in parts for r in part["rejected"]]
    counts = {reason: sum(r["reason"] == reason for r in rejected) for reason in REJECT_REASONS}
    return {
        "rows": sum(part["rows"] for part in parts),
        "audio_seconds": round(sum(part["audio_seconds"] for part in parts), 3),
        "positives_per_class": positives,
        "content_digest": as_hex(add_digests(*(part["content_digest"] for part in parts))),
        "shards": [shard for part in parts for shard in part["shards"]],
        "rejected": rejected,
        "rejected_counts": {reason: n for reason, n in counts.items() if n},
    }


def write_split_on_ray(
    writer: DatasetWriter,
    split: str,
    items: Iterable[ClipSource | Rejection],
    spec: RowSpec,
    *,
    shard_clips: int,
    on_clips: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Write ``split`` with Ray tasks (Ray already connected); return its manifest entry."""
    import ray

    if shard_clips < 1:
        raise ValueError(f"shard_clips must be >= 1, got {shard_clips}")
    task = ray.remote(write_chunk).options(num_cpus=1, scheduling_strategy="SPREAD")
    spec_key = _spec_key(spec, writer.row_group_rows)
    spec_ref = ray.put(spec)
    done: dict[int, dict[str, Any]] = {}
    pending: dict[Any, tuple[int, int]] = {}  # task -> (chunk index, clips)

    def collect(block: bool) -> None:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if block else 0)
        for ref in ready:
            index, clips = pending.pop(ref)
            done[index] = ray.get(ref)
            if on_clips:
                on_clips(clips)

    for index, chunk in enumerate(_chunks(items, shard_clips)):
        fingerprint = chunk_fingerprint(chunk, spec_key)
        record = writer.record_path(split, index)
        previous = _finished(record, fingerprint, writer.root)
        if previous is not None:
            done[index] = previous
            if on_clips:
                on_clips(len(chunk))
            continue
        limit = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 0)))
        while len(pending) >= limit:
            collect(block=True)
        ref = task.remote(
            str(writer.root),
            split,
            index,
            chunk,
            spec_ref,
            num_classes=len(writer.labels),
            row_group_rows=writer.row_group_rows,
            record=str(record),
            fingerprint=fingerprint,
        )
        pending[ref] = (index, len(chunk))
    while pending:
        collect(block=True)
    parts = [done[i] for i in sorted(done)]
    for part in parts:
        part.pop("fingerprint", None)
    return merge_entries(parts, len(writer.labels))
