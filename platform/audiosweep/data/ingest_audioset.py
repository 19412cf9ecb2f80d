"""Ingest an audio folder described by AudioSet segments CSVs.

A segments CSV has ``#`` header lines, then ``YTID, start_seconds, end_seconds, "mid1,mid2"``.
A clip's audio is ``<audio-dir>/**/<YTID>.<ext>``, also ``<YTID>_<start>[_<end>].<ext>`` and the
same names prefixed with ``Y``; any format and sample rate soundfile reads, any channel count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ingest import ClusterIngestOptions, SplitInput, ingest
from .rows import ClipSource
from .schema import DatasetError, LabelIndex
from .segments import Segment, read_segments

if TYPE_CHECKING:  # typing has Unpack from Python 3.11; 3.10 is still supported
    from typing_extensions import Unpack

# When several files share a stem, the first extension in this order wins.
PREFERRED_EXTENSIONS = (".flac", ".wav", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


def index_audio_dir(audio_dir: str | os.PathLike) -> dict[str, Path]:
    """Map every file stem under ``audio_dir`` (recursively) to its path."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise DatasetError(f"audio directory not found: {audio_dir}")
    rank = {ext: i for i, ext in enumerate(PREFERRED_EXTENSIONS)}
    found: dict[str, Path] = {}
    for dirpath, _, filenames in os.walk(audio_dir):
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            stem, ext = os.path.splitext(name)
            current = found.get(stem)
            if current is None or rank.get(ext.lower(), len(rank)) < rank.get(
                current.suffix.lower(), len(rank)
            ):
                found[stem] = path
    return found


def _number_forms(value: str) -> list[str]:
    forms = [value]
    try:
        x = float(value)
    except ValueError:
        return forms
    forms += [f"{x:.3f}", f"{x:.1f}", f"{x:g}"]
    if x == int(x):
        forms.append(str(int(x)))
    return list(dict.fromkeys(forms))


def candidate_stems(segment: Segment) -> list[str]:
    stems = []
    for prefix in ("", "Y"):
        base = prefix + segment.ytid
        stems.append(base)
        for start in _number_forms(segment.start):
            stems.append(f"{base}_{start}")
            stems += [f"{base}_{start}_{end}" for end in _number_forms(segment.end)]
    return stems


def segment_sources(
    segments_csv: str | os.PathLike, files: dict[str, Path]
) -> Iterator[ClipSource]:
    for seg in read_segments(segments_csv):
        path = next((files[s] for s in candidate_stems(seg) if s in files), None)
        yield ClipSource(
            clip_id=seg.ytid,
            audio=path,
            mids=seg.mids,
            where=f"{Path(segments_csv).name}:{seg.line}",
        )


def count_segments(path: str | os.PathLike) -> int:
    return sum(1 for _ in read_segments(path))


def prepare_audioset(
    out_dir: str | os.PathLike,
    *,
    audio_dir: str | os.PathLike,
    segments: str | os.PathLike,
    eval_segments: str | os.PathLike | None = None,
    labels: LabelIndex,
    **options: Unpack[ClusterIngestOptions],
) -> dict[str, dict[str, Any]]:
    """Ingest ``segments`` as split ``train`` and ``eval_segments`` as split ``eval``;
    ``options`` as `ingest` takes them."""
    csvs = {"train": segments}
    if eval_segments is not None:
        csvs["eval"] = eval_segments
    for csv_path in csvs.values():
        if not Path(csv_path).is_file():
            raise DatasetError(f"segments CSV not found: {csv_path}")
    files = index_audio_dir(audio_dir)
    splits = {
        name: SplitInput(segment_sources(path, files), total=count_segments(path))
        for name, path in csvs.items()
    }
    return ingest(
        out_dir,
        splits,
        labels=labels,
        source={"kind": "audioset", "segments": {k: Path(v).name for k, v in csvs.items()}},
        **options,
    )
