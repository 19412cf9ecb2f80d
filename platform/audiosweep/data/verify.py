"""Check a dataset against its manifest: files, sizes, sha256, row counts, schema, every clip."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from . import audio_io
from .fingerprint import add_digests, as_hex, fingerprint, row_digest
from .schema import SHARD_SCHEMA, DatasetError, DatasetInfo, sha256_file

VERIFY_BATCH_ROWS = 64


@dataclass
class VerifyReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    shards: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _schema_problems(schema) -> list[str]:
    problems = []
    for expected in SHARD_SCHEMA:
        if expected.name not in schema.names:
            problems.append(f"missing column {expected.name!r}")
        elif not schema.field(expected.name).type.equals(expected.type):
            got = schema.field(expected.name).type
            problems.append(f"column {expected.name!r} is {got}, expected {expected.type}")
    return problems


def _check_rows(
    table,
    shard: str,
    info: DatasetInfo,
    seen: dict[str, str],
    positives: np.ndarray,
    report: VerifyReport,
    content: list[int],
) -> None:
    columns = table.to_pydict()
    for clip_id, audio, rate, frames, labels in zip(
        columns["clip_id"],
        columns["audio"],
        columns["sample_rate"],
        columns["num_frames"],
        columns["labels"],
        strict=True,
    ):
        where = f"{shard}: clip {clip_id!r}"
        if clip_id in seen:
            report.problems.append(f"{where}: clip id repeated (also in {seen[clip_id]})")
        seen[clip_id] = shard
        content[0] = add_digests(content[0], row_digest(clip_id, labels, audio))
        if not labels or any(not 0 <= k < info.num_classes for k in labels):
            report.problems.append(f"{where}: labels {labels} not in 0..{info.num_classes - 1}")
        else:
            positives[sorted(set(labels))] += 1
        try:
            data, file_rate = audio_io.decode(audio)
        except audio_io.AudioDecodeError as err:
            report.problems.append(f"{where}: audio does not decode ({err})")
            continue
        if file_rate != rate:
            report.problems.append(
                f"{where}: audio is {file_rate} Hz, sample_rate column says {rate}"
            )
        if data.shape[0] != frames:
            report.problems.append(
                f"{where}: audio has {data.shape[0]} frames, num_frames says {frames}"
            )


def verify(dataset_dir: str | os.PathLike, *, progress: bool | None = None) -> VerifyReport:
    """Re-read every shard and decode every clip; collect every mismatch found."""
    report = VerifyReport(Path(dataset_dir))
    try:
        info = DatasetInfo.load(dataset_dir)
    except DatasetError as err:
        report.problems.append(str(err))
        return report
    total = sum(int(entry.get("rows", 0)) for entry in info.splits.values())
    bar = tqdm(
        total=total,
        desc="verify",
        unit="clip",
        disable=None if progress is None else not progress,
        file=sys.stderr,
    )
    seen: dict[str, str] = {}
    for split, entry in info.splits.items():
        positives = np.zeros(info.num_classes, dtype=np.int64)
        rows = 0
        content = [0]
        listed = set()
        for shard in entry.get("shards", []):
            name = shard["file"]
            path = info.path / name
            listed.add(path.name)
            report.shards += 1
            if not path.is_file():
                report.problems.append(f"{name}: listed in the manifest but missing")
                continue
            size = path.stat().st_size
            if size != shard["bytes"]:
                report.problems.append(f"{name}: {size} bytes, manifest says {shard['bytes']}")
            digest = sha256_file(path)
            if digest != shard["sha256"]:
                report.problems.append(
                    f"{name}: sha256 mismatch (manifest {shard['sha256'][:16]}..., file {digest[:16]}...)"
                )
            try:
                parquet = pq.ParquetFile(path)
                schema_problems = _schema_problems(parquet.schema_arrow)
                if schema_problems:
                    report.problems += [f"{name}: {p}" for p in schema_problems]
                    continue
                if parquet.metadata.num_rows != shard["rows"]:
                    report.problems.append(
                        f"{name}: {parquet.metadata.num_rows} rows, manifest says {shard['rows']}"
                    )
                for batch in parquet.iter_batches(batch_size=VERIFY_BATCH_ROWS):
                    _check_rows(batch, name, info, seen, positives, report, content)
                    rows += batch.num_rows
                    report.rows += batch.num_rows
                    bar.update(batch.num_rows)
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                report.problems.append(f"{name}: unreadable Parquet ({err})")
        if rows != entry["rows"]:
            report.problems.append(
                f"split {split!r}: {rows} rows read, manifest says {entry['rows']}"
            )
        if positives.tolist() != list(entry["positives_per_class"]):
            diff = np.flatnonzero(positives != np.asarray(entry["positives_per_class"]))
            report.problems.append(
                f"split {split!r}: positives per class differ from the manifest "
                f"(classes {diff[:10].tolist()})"
            )
        recorded = entry.get("content_digest")
        if recorded is not None and recorded != as_hex(content[0]):
            report.problems.append(
                f"split {split!r}: rows differ from the manifest's content digest "
                "(a clip, label or audio changed since the ingest)"
            )
        split_dir = info.path / split
        if split_dir.is_dir():
            extra = sorted(p.name for p in split_dir.iterdir() if p.name not in listed)
            if extra:
                report.warnings.append(
                    f"{split}/: files not in the manifest: {', '.join(extra[:5])}"
                )
    bar.close()
    recorded = info.manifest.get("fingerprint")
    if recorded is not None and "content_digest" in next(iter(info.splits.values()), {}):
        expected = fingerprint(info.mids, info.sample_rate, info.splits)
        if recorded != expected:
            report.problems.append(
                f"manifest fingerprint {recorded[:16]} does not match its splits ({expected[:16]})"
            )
    return report
