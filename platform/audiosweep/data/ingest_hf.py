"""Ingest Parquet files laid out like the Hugging Face AudioSet dataset.

Columns read: ``video_id`` (string), ``audio`` (struct ``{bytes, path}``, encoded audio) and
``labels`` (list of MIDs, or one comma-separated string). ``human_labels`` is ignored: the
display names come from the label index.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from .ingest import ClusterIngestOptions, SplitInput, ingest
from .rows import ClipSource
from .schema import DatasetError, LabelIndex
from .writer import Rejection

if TYPE_CHECKING:  # typing has Unpack from Python 3.11; 3.10 is still supported
    from typing_extensions import Unpack

REQUIRED_COLUMNS = ("video_id", "audio", "labels")
READ_BATCH_ROWS = 64


def expand_parquet(patterns: str | list[str]) -> list[Path]:
    """Files matching glob pattern(s); a directory stands for its ``*.parquet`` files."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files: list[Path] = []
    for pattern in patterns:
        if Path(pattern).is_dir():
            pattern = str(Path(pattern) / "*.parquet")
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise DatasetError(f"no Parquet files match {pattern!r}")
        files += [Path(m) for m in matches]
    return list(dict.fromkeys(files))


def _mids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(m.strip() for m in value if m and m.strip())


def _audio(value: Any, parquet_file: Path) -> bytes | Path | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    data = value.get("bytes")
    if data is not None:
        return bytes(data)
    path = value.get("path")
    if path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else parquet_file.parent / candidate
    return None


def hf_sources(files: list[Path]) -> Iterator[ClipSource | Rejection]:
    for file in files:
        offset = 0
        try:
            parquet = pq.ParquetFile(file)
            names = parquet.schema_arrow.names
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise DatasetError(f"{file}: missing column(s) {', '.join(missing)} (has {names})")
            batches = parquet.iter_batches(
                batch_size=READ_BATCH_ROWS, columns=list(REQUIRED_COLUMNS)
            )
            for batch in batches:
                columns = batch.to_pydict()
                for i, (video_id, audio, labels) in enumerate(
                    zip(columns["video_id"], columns["audio"], columns["labels"], strict=True)
                ):
                    yield ClipSource(
                        clip_id=str(video_id) if video_id else f"{file.name}#{offset + i}",
                        audio=_audio(audio, file),
                        mids=_mids(labels),
                        where=f"{file.name} row {offset + i}",
                    )
                offset += batch.num_rows
        except DatasetError:
            raise
        except Exception as err:  # pyarrow raises several types for a damaged file
            yield Rejection(
                f"{file.name}#{offset}", "corrupt", f"unreadable Parquet from row {offset}: {err}"
            )


def _count_rows(files: list[Path]) -> int | None:
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception:
        return None


def prepare_hf(
    out_dir: str | os.PathLike,
    *,
    parquet: str | list[str],
    split: str,
    labels: LabelIndex,
    **options: Unpack[ClusterIngestOptions],
) -> dict[str, dict[str, Any]]:
    """Ingest the Parquet files matching ``parquet`` as split ``split``; ``options`` as
    `ingest` takes them."""
    files = expand_parquet(parquet)
    return ingest(
        out_dir,
        {split: SplitInput(hf_sources(files), total=_count_rows(files))},
        labels=labels,
        source={"kind": "hf", "files": {split: [f.name for f in files]}},
        **options,
    )
