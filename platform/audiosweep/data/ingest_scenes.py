"""Ingest single-label scene data: a folder per class, or a TAU-style metadata CSV.

A split's source is either
- a folder whose immediate sub-folders are the classes (``<dir>/<scene>/**/<clip>.<ext>``;
  clip ids are ``<scene>/<path below it without extension>``), or
- a CSV with a header naming ``filename`` and ``scene_label`` columns, tab- or
  comma-separated (TAU Urban Acoustic Scenes' ``meta.csv`` and ``evaluation_setup/*.csv``);
  ``filename`` is relative to ``--audio-root`` (default: the CSV's folder) and, without its
  extension, is the clip id.

Classes are the sorted scene labels of all given splits; the dataset is single-label.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ingest import IngestOptions, SplitInput, ingest
from .ingest_audioset import PREFERRED_EXTENSIONS
from .rows import ClipSource
from .schema import DatasetError, LabelIndex

if TYPE_CHECKING:  # typing has Unpack from Python 3.11; 3.10 is still supported
    from typing_extensions import Unpack

AUDIO_EXTENSIONS = frozenset(PREFERRED_EXTENSIONS)
REQUIRED_COLUMNS = ("filename", "scene_label")


def _folder_items(root: Path) -> list[tuple[str, Path, str]]:
    """(clip id, path, label) for every audio file under a class sub-folder of ``root``."""
    items = []
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders (expected <dir>/<scene>/<clip>.wav)")
    for class_dir in classes:
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
                    continue
                clip_id = path.relative_to(root).with_suffix("").as_posix()
                items.append((clip_id, path, class_dir.name))
    return items


def _csv_items(path: Path, audio_root: Path | None) -> list[tuple[str, Path, str]]:
    """(clip id, path, label) for every row of a TAU-style metadata CSV."""
    root = audio_root or path.parent
    with path.open(newline="", encoding="utf-8") as f:
        sample = f.read(4096)
        f.seek(0)
        first = sample.splitlines()[0] if sample.strip() else ""
        delimiter = "\t" if "\t" in first else ","
        reader = csv.DictReader(f, delimiter=delimiter)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: no {' and '.join(missing)} column (header: {', '.join(header) or 'none'}); "
                "expected TAU-style columns filename and scene_label"
            )
        items = []
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            name = row.get("filename", "")
            if not name:
                continue
            clip_id = Path(name).with_suffix("").as_posix()
            items.append((clip_id, root / name, row.get("scene_label", "")))
    return items


def read_scene_source(source: str | os.PathLike, audio_root: str | os.PathLike | None = None):
    """(clip id, path, label) of one split's source: a class-per-folder tree or a metadata CSV."""
    path = Path(source)
    if path.is_dir():
        return _folder_items(path)
    if path.is_file():
        return _csv_items(path, Path(audio_root) if audio_root else None)
    raise DatasetError(f"scene source not found: {path} (a folder of class folders or a CSV)")


def _sources(items: list[tuple[str, Path, str]], where: str) -> Iterator[ClipSource]:
    for clip_id, path, label in items:
        yield ClipSource(clip_id=clip_id, audio=path, mids=(label,) if label else (), where=where)


def prepare_scenes(
    out_dir: str | os.PathLike,
    *,
    splits: dict[str, str | os.PathLike],
    audio_root: str | os.PathLike | None = None,
    **options: Unpack[IngestOptions],
) -> dict[str, dict[str, Any]]:
    """Ingest each split (name → folder or CSV) into a single-label dataset at ``out_dir``;
    ``options`` as `ingest` takes them."""
    if not splits:
        raise DatasetError("no split to prepare")
    read = {name: read_scene_source(src, audio_root) for name, src in splits.items()}
    names = sorted({label for items in read.values() for _, _, label in items if label})
    if not names:
        raise DatasetError("no labelled clips found in " + ", ".join(map(str, splits.values())))
    labels = LabelIndex(tuple(names), tuple(names))
    inputs = {
        name: SplitInput(_sources(items, Path(splits[name]).name), total=len(items))
        for name, items in read.items()
    }
    return ingest(
        out_dir,
        inputs,
        labels=labels,
        source={"kind": "scenes", "splits": {k: str(v) for k, v in splits.items()}},
        task="singlelabel",
        **options,
    )
