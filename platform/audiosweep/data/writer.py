"""Atomic dataset writing: size-bounded Parquet shards, then the manifest last.

Every shard is written under a hidden temporary name and renamed when complete; the
manifest (the dataset's completion marker) is written only after every split is closed,
so an interrupted ingest never leaves a folder that reads as a complete dataset.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .fingerprint import add_digests, as_hex, fingerprint, row_digest, shards_digest
from .schema import (
    LABELS_NAME,
    MANIFEST_NAME,
    REJECT_REASONS,
    SCHEMA_VERSION,
    SHARD_SCHEMA,
    TASKS,
    DatasetError,
    LabelIndex,
    read_manifest,
    sha256_file,
    write_json_atomic,
)

SHARD_NAME = re.compile(r"^part-\d{5}\.parquet$")
# A distributed ingest keeps one record per finished shard here until the manifest is written.
STATE_DIR = ".ingest"
TEMP_NAME = re.compile(r"^\.part-\d{5}\.parquet\.tmp$")
DEFAULT_ROW_GROUP_ROWS = 32


@dataclass(frozen=True)
class Row:
    """One clip ready for a shard: encoded audio at the dataset sample rate, class indices."""

    clip_id: str
    audio: bytes
    sample_rate: int
    num_frames: int
    labels: tuple[int, ...]


@dataclass(frozen=True)
class Rejection:
    clip_id: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {self.reason!r}")

    def as_dict(self) -> dict[str, str]:
        return {"clip_id": self.clip_id, "reason": self.reason, "detail": self.detail}


class SplitWriter:
    """Writes one split's rows to ``<split>/part-NNNNN.parquet`` files of bounded size."""

    def __init__(
        self,
        root: Path,
        split: str,
        *,
        num_classes: int,
        shard_bytes: int,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        single_label: bool = False,
        first_index: int = 0,
    ) -> None:
        self.root = root
        self.single_label = single_label
        self.first_index = int(first_index)
        self.split = split
        self.dir = root / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.num_classes = num_classes
        self.shard_bytes = max(1, int(shard_bytes))
        self.row_group_rows = max(1, int(row_group_rows))
        self.positives = np.zeros(num_classes, dtype=np.int64)
        self.shards: list[dict[str, Any]] = []
        self.rejected: list[dict[str, str]] = []
        self.rows = 0
        self.audio_seconds = 0.0
        self.digest = 0
        self._buffer: list[Row] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._shard_rows = 0
        self._shard_audio_bytes = 0

    def add(self, row: Row) -> None:
        for label in row.labels:
            if not 0 <= label < self.num_classes:
                raise ValueError(f"{row.clip_id}: label {label} outside 0..{self.num_classes - 1}")
        if self.single_label and len(row.labels) != 1:
            raise ValueError(
                f"{row.clip_id}: a single-label dataset needs one label, not {row.labels}"
            )
        if self._shard_rows and self._shard_audio_bytes + len(row.audio) > self.shard_bytes:
            self._close_shard()
        self._buffer.append(row)
        self._shard_rows += 1
        self._shard_audio_bytes += len(row.audio)
        self.rows += 1
        self.audio_seconds += row.num_frames / row.sample_rate
        self.positives[list(row.labels)] += 1
        self.digest = add_digests(self.digest, row_digest(row.clip_id, row.labels, row.audio))
        if len(self._buffer) >= self.row_group_rows:
            self._flush_row_group()

    def reject(self, rejection: Rejection) -> None:
        self.rejected.append(rejection.as_dict())

    def close(self) -> dict[str, Any]:
        """Finish the last shard and return this split's manifest entry."""
        if self._shard_rows:
            self._close_shard()
        counts = Counter(r["reason"] for r in self.rejected)
        return {
            "rows": self.rows,
            "audio_seconds": round(self.audio_seconds, 3),
            "positives_per_class": self.positives.tolist(),
            "content_digest": as_hex(self.digest),
            "shards": self.shards,
            "rejected": self.rejected,
            "rejected_counts": {
                reason: counts[reason] for reason in REJECT_REASONS if counts[reason]
            },
        }

    def abort(self) -> None:
        """Drop the shard being written (its temporary file); finished shards stay as they are."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()
        self._buffer.clear()

    def _flush_row_group(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            index = self.first_index + len(self.shards)
            self._tmp = self.dir / f".part-{index:05d}.parquet.tmp"
            self._writer = pq.ParquetWriter(
                self._tmp,
                SHARD_SCHEMA,
                # Audio is already compressed; only the small columns are worth compressing.
                compression={
                    "clip_id": "zstd",
                    "audio": "none",
                    "sample_rate": "zstd",
                    "num_frames": "zstd",
                    "labels": "zstd",
                },
                use_dictionary=False,
                write_statistics=["clip_id", "sample_rate", "num_frames"],
            )
        rows = self._buffer
        table = pa.Table.from_pydict(
            {
                "clip_id": [r.clip_id for r in rows],
                "audio": [r.audio for r in rows],
                "sample_rate": [r.sample_rate for r in rows],
                "num_frames": [r.num_frames for r in rows],
                "labels": [list(r.labels) for r in rows],
            },
            schema=SHARD_SCHEMA,
        )
        self._writer.write_table(table, row_group_size=len(rows))
        self._buffer = []

    def _close_shard(self) -> None:
        self._flush_row_group()
        assert self._writer is not None and self._tmp is not None
        self._writer.close()
        self._writer = None
        final = self.dir / f"part-{self.first_index + len(self.shards):05d}.parquet"
        with open(self._tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, final)
        self._tmp = None
        self.shards.append(
            {
                "file": f"{self.split}/{final.name}",
                "rows": self._shard_rows,
                "bytes": final.stat().st_size,
                "sha256": sha256_file(final),
            }
        )
        self._shard_rows = 0
        self._shard_audio_bytes = 0


class DatasetWriter:
    """Creates or extends a dataset folder; use as a context manager.

    Writing a split that the existing manifest already lists is refused unless
    ``overwrite``; other existing splits are kept when the label index and sample
    rate match. The manifest is written on a clean exit only.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        labels: LabelIndex,
        splits: list[str],
        sample_rate: int,
        clip_seconds: float,
        shard_mb: float = 256,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        overwrite: bool = False,
        source: dict[str, Any] | None = None,
        task: str = "multilabel",
        resume: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        if not splits:
            raise ValueError("no splits to write")
        for split in splits:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", split):
                raise DatasetError(f"invalid split name {split!r}")
        if shard_mb <= 0:
            raise DatasetError(f"shard size must be positive, got {shard_mb} MB")
        self.root = Path(out_dir)
        self.labels = labels
        self.splits = list(dict.fromkeys(splits))
        self.sample_rate = int(sample_rate)
        self.clip_seconds = float(clip_seconds)
        self.shard_bytes = int(shard_mb * 1024 * 1024)
        self.row_group_rows = row_group_rows
        self.overwrite = overwrite
        self.resume = resume
        self.source = source or {}
        self.task = task
        self.kept: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self._open: dict[str, SplitWriter] = {}
        self._plan()

    def _plan(self) -> None:
        """Decide what to keep and refuse early, before anything on disk changes."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise DatasetError(f"{root} exists and is not a directory")
        self._existing_manifest: dict[str, Any] | None = None
        if (root / MANIFEST_NAME).is_file():
            manifest = read_manifest(root)
            self._existing_manifest = manifest
            existing = dict(manifest.get("splits", {}))
            clash = [s for s in self.splits if s in existing]
            if clash and not self.overwrite:
                raise DatasetError(
                    f"{root} already holds a complete dataset with split(s) "
                    f"{', '.join(clash)}; pass --overwrite to replace them"
                )
            # A split carved from one being rewritten holds its old rows: it goes with it.
            others = {
                k: v
                for k, v in existing.items()
                if k not in self.splits
                and (v.get("carved_from") or {}).get("split") not in self.splits
            }
            same_kind = (
                int(manifest["sample_rate"]) == self.sample_rate
                and manifest.get("task", "multilabel") == self.task
                and (root / LABELS_NAME).is_file()
                and LabelIndex.read(root / LABELS_NAME) == self.labels
            )
            if others and not same_kind:
                raise DatasetError(
                    f"{root} holds split(s) {', '.join(sorted(others))} with a different label "
                    f"index, task or sample rate ({manifest['sample_rate']} Hz); write to a new "
                    "folder"
                )
            self.kept = others
            if others:
                # Keep the description of where the kept splits came from.
                merged = dict(manifest.get("source") or {})
                for key, value in self.source.items():
                    if isinstance(value, dict) and isinstance(merged.get(key), dict):
                        merged[key] = {**merged[key], **value}
                    else:
                        merged[key] = value
                self.source = merged
            for split in set(existing) - set(others) | set(self.splits):
                if (root / split).exists() and not self._is_leftover(root / split):
                    raise DatasetError(f"{root / split} holds files that are not shards")
        elif root.exists():
            foreign = [p.name for p in root.iterdir() if not self._is_leftover(p)]
            if foreign:
                raise DatasetError(
                    f"{root} exists and is not an audiosweep dataset "
                    f"(contains {', '.join(sorted(foreign)[:5])}); choose an empty or new folder"
                )

    @staticmethod
    def _is_leftover(path: Path) -> bool:
        """Files an interrupted ingest leaves behind (safe to remove)."""
        if path.is_file():
            return path.name in (LABELS_NAME, f".{LABELS_NAME}.tmp", f".{MANIFEST_NAME}.tmp")
        if path.is_dir() and path.name == STATE_DIR:
            return True
        return path.is_dir() and all(
            p.is_file() and (SHARD_NAME.match(p.name) or TEMP_NAME.match(p.name))
            for p in path.iterdir()
        )

    def __enter__(self) -> DatasetWriter:
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        if self._existing_manifest is not None:
            # The replaced splits stop being listed before their files are touched.
            if self.kept:
                write_json_atomic(root / MANIFEST_NAME, self._manifest(self.kept))
            else:
                (root / MANIFEST_NAME).unlink()
            dropped = set(self._existing_manifest.get("splits", {})) - set(self.kept)
            for split in dropped:
                self._clear_split_dir(root / split)
        else:
            for path in root.iterdir():
                resumed = self.resume and (path.name in self.splits or path.name == STATE_DIR)
                if path.is_dir() and not resumed:
                    self._clear_split_dir(path)
        for split in self.splits:
            if self.resume:
                self._keep_recorded_shards(split)
            else:
                self._clear_split_dir(root / split)
        if not self.resume:
            self._clear_split_dir(self.state_dir)
        self.labels.write(root / LABELS_NAME)
        return self

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def record_path(self, split: str, index: int) -> Path:
        """Where a distributed ingest records shard ``index`` of ``split`` as finished."""
        return self.state_dir / split / f"part-{index:05d}.json"

    def _keep_recorded_shards(self, split: str) -> None:
        """Resuming: only shards with a finished-shard record are trusted; the rest (a shard
        renamed just before an interruption, temporary files) are removed and redone."""
        folder = self.root / split
        if not folder.is_dir():
            return
        recorded = {p.stem for p in (self.state_dir / split).glob("part-*.json")}
        for path in folder.iterdir():
            if not (SHARD_NAME.match(path.name) and path.name.split(".")[0] in recorded):
                path.unlink()

    def set_entry(self, split: str, entry: dict[str, Any]) -> None:
        """A split written by other processes (a distributed ingest): its manifest entry."""
        if split not in self.splits or split in self.entries or split in self._open:
            raise RuntimeError(f"split {split!r} is not open for an entry")
        self.entries[split] = entry

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for writer in self._open.values():
                writer.abort()
            return
        for split in self.splits:
            if split not in self.entries:
                self.close_split(split)
        if self.resume:
            self._drop_unlisted_shards()
        write_json_atomic(self.root / MANIFEST_NAME, self._manifest({**self.kept, **self.entries}))
        # After the manifest: a crash in between leaves records that still match their shards.
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _drop_unlisted_shards(self) -> None:
        """Shards an earlier, larger attempt left beyond the ones this ingest lists."""
        for split in self.splits:
            listed = {Path(s["file"]).name for s in self.entries[split]["shards"]}
            folder = self.root / split
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.name not in listed:
                        path.unlink()

    def _clear_split_dir(self, path: Path) -> None:
        if not path.exists():
            return
        if not self._is_leftover(path):
            raise DatasetError(f"{path} holds files that are not shards; not touching it")
        shutil.rmtree(path)

    def _manifest(self, splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
        # Multi-label manifests stay as they were (no "task": readers default to multilabel).
        task = {} if self.task == "multilabel" else {"task": self.task}
        for entry in splits.values():
            if "content_digest" not in entry:  # a kept split written before fingerprints
                paths = [self.root / shard["file"] for shard in entry["shards"]]
                entry["content_digest"] = as_hex(shards_digest(paths))
        return {
            "schema_version": SCHEMA_VERSION,
            **task,
            "fingerprint": fingerprint(self.labels.mids, self.sample_rate, splits),
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "num_classes": len(self.labels),
            "labels_file": LABELS_NAME,
            "source": self.source,
            "splits": {name: splits[name] for name in sorted(splits)},
        }

    def split(self, name: str) -> SplitWriter:
        if name not in self.splits:
            raise KeyError(f"split {name!r} was not declared")
        if name in self.entries:
            raise RuntimeError(f"split {name!r} is already closed")
        if name not in self._open:
            self._open[name] = SplitWriter(
                self.root,
                name,
                num_classes=len(self.labels),
                shard_bytes=self.shard_bytes,
                row_group_rows=self.row_group_rows,
                single_label=self.task == "singlelabel",
            )
        return self._open[name]

    def close_split(self, name: str) -> dict[str, Any]:
        entry = self.split(name).close()
        self.entries[name] = entry
        del self._open[name]
        return entry

    def kept_shards(self) -> dict[str, list[Path]]:
        """Shard paths of the existing splits that this write keeps."""
        return {
            name: [self.root / shard["file"] for shard in entry["shards"]]
            for name, entry in self.kept.items()
        }
