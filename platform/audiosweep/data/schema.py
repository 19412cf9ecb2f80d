"""Schema version 1 of an audiosweep dataset: shard columns, labels.csv and manifest.json.

A dataset is a folder::

    labels.csv              index,mid,display_name (class index order)
    manifest.json           written last: its presence marks the dataset complete
    <split>/part-NNNNN.parquet
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from audiosweep.errors import DatasetError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.csv"
DEFAULT_SAMPLE_RATE = 32000
DEFAULT_CLIP_SECONDS = 10.0

REJECT_REASONS = (
    "corrupt",
    "missing",
    "empty",
    "unknown_label",
    "duplicate",
    "no_labels",
    "silent",
    "clipped",
)
# The manifest's optional "task": multilabel (any number of labels per clip, the default for a
# manifest without the key) or singlelabel (exactly one label per clip: scene classification).
TASKS = ("multilabel", "singlelabel")
DEFAULT_TASK = "multilabel"

SHARD_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("audio", pa.binary(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("labels", pa.list_(pa.int16()), nullable=False),
    ],
    metadata={"audiosweep.schema_version": str(SCHEMA_VERSION)},
)


def default_labels_path() -> Path:
    """The packaged 527-class AudioSet label index."""
    ref = resources.files("audiosweep").joinpath("resources", "class_labels_indices.csv")
    return Path(str(ref))


@dataclass(frozen=True)
class LabelIndex:
    """Class index order: ``mids[i]`` and ``names[i]`` describe class ``i``."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.mids) != len(self.names):
            raise ValueError("mids and names differ in length")
        if len(set(self.mids)) != len(self.mids):
            dupes = sorted({m for m in self.mids if self.mids.count(m) > 1})
            raise ValueError(f"label index repeats mids: {dupes[:5]}")

    def __len__(self) -> int:
        return len(self.mids)

    def index_of(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.mids)}

    @classmethod
    def read(cls, path: str | os.PathLike) -> LabelIndex:
        """Read ``index,mid,display_name``; indices must be 0..N-1 in order."""
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"label index not found: {path}")
        mids: list[str] = []
        names: list[str] = []
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != [
                "index",
                "mid",
                "display_name",
            ]:
                raise DatasetError(
                    f"{path}: expected header 'index,mid,display_name', got {header!r}"
                )
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < 3:
                    raise DatasetError(f"{path}:{line_no}: expected 3 fields, got {row!r}")
                try:
                    index = int(row[0])
                except ValueError:
                    raise DatasetError(
                        f"{path}:{line_no}: index {row[0]!r} is not an integer"
                    ) from None
                if index != len(mids):
                    raise DatasetError(
                        f"{path}:{line_no}: index {index} out of order (expected {len(mids)})"
                    )
                mids.append(row[1].strip())
                names.append(row[2].strip())
        if not mids:
            raise DatasetError(f"{path}: no classes")
        try:
            return cls(tuple(mids), tuple(names))
        except ValueError as err:
            raise DatasetError(f"{path}: {err}") from None

    def write(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            writer.writerow(["index", "mid", "display_name"])
            for i, (mid, name) in enumerate(zip(self.mids, self.names, strict=True)):
                writer.writerow([i, mid, name])
        os.replace(tmp, path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / MANIFEST_NAME
    if not dataset_dir.is_dir():
        raise DatasetError(f"no dataset folder at {dataset_dir}")
    if not path.is_file():
        raise DatasetError(
            f"not a complete dataset: {dataset_dir} "
            f"(no {MANIFEST_NAME}; an ingest may have been interrupted)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(
            f"{path}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
        )
    return manifest


@dataclass
class DatasetInfo:
    """What a complete dataset folder holds, from its manifest and labels.csv."""

    path: Path
    sample_rate: int
    clip_seconds: float
    num_classes: int
    class_names: list[str]
    mids: list[str]
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    task: str = DEFAULT_TASK

    @classmethod
    def load(cls, dataset_dir: str | os.PathLike) -> DatasetInfo:
        path = Path(dataset_dir).resolve()
        manifest = read_manifest(path)
        labels = LabelIndex.read(path / LABELS_NAME)
        if int(manifest.get("num_classes", len(labels))) != len(labels):
            raise DatasetError(
                f"{path}: manifest says {manifest['num_classes']} classes, "
                f"{LABELS_NAME} has {len(labels)}"
            )
        task = manifest.get("task", DEFAULT_TASK)
        if task not in TASKS:
            raise DatasetError(f"{path}: manifest task {task!r} is not one of {', '.join(TASKS)}")
        return cls(
            task=task,
            path=path,
            sample_rate=int(manifest["sample_rate"]),
            clip_seconds=float(manifest["clip_seconds"]),
            num_classes=len(labels),
            class_names=list(labels.names),
            mids=list(labels.mids),
            splits=dict(manifest.get("splits", {})),
            manifest=manifest,
        )

    def split(self, split: str) -> dict[str, Any]:
        try:
            return self.splits[split]
        except KeyError:
            raise DatasetError(
                f"{self.path}: no split {split!r} (has: {', '.join(sorted(self.splits)) or 'none'})"
            ) from None

    @property
    def fingerprint(self) -> str | None:
        """The content id of the rows (`audiosweep.data.fingerprint`); None for a dataset
        written before fingerprints."""
        return self.manifest.get("fingerprint")

    def rows(self, split: str) -> int:
        return int(self.split(split)["rows"])

    def positives(self, split: str) -> list[int]:
        return [int(n) for n in self.split(split)["positives_per_class"]]

    def shard_paths(self, split: str) -> list[Path]:
        return [self.path / shard["file"] for shard in self.split(split)["shards"]]

    def clip_frames(self, clip_seconds: float | None = None) -> int:
        seconds = self.clip_seconds if clip_seconds is None else clip_seconds
        return round(seconds * self.sample_rate)
