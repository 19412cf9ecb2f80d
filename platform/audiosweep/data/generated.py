"""Writing a generated dataset: clips synthesised on the fly (the demo datasets, the benchmarks'
synthetic one), split by split, as FLAC (or WAV) rows."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .rows import row_from_wave
from .schema import LabelIndex
from .writer import DatasetWriter

# Clip ``index`` of a split: its id, float32 waveform at the dataset rate and class indices.
ClipMaker = Callable[[str, int], tuple[str, np.ndarray, tuple[int, ...]]]


def write_generated(
    out_dir: str | os.PathLike,
    make_clip: ClipMaker,
    *,
    counts: dict[str, int],
    labels: LabelIndex,
    source: dict[str, Any],
    sample_rate: int,
    clip_seconds: float,
    shard_mb: float = 256,
    overwrite: bool = False,
    progress: bool | None = None,
    name: str = "generate",
    task: str = "multilabel",
    audio_format: str = "flac",
) -> Path:
    """Write ``counts[split]`` clips of ``make_clip`` per split into the dataset at ``out_dir``,
    stored as ``audio_format``; ``name`` labels the progress bar."""
    with DatasetWriter(
        out_dir,
        labels=labels,
        splits=list(counts),
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        shard_mb=shard_mb,
        overwrite=overwrite,
        source=source,
        task=task,
    ) as writer:
        for split, count in counts.items():
            out = writer.split(split)
            bar = tqdm(
                range(count),
                desc=f"{name} {split}",
                unit="clip",
                disable=None if progress is None else not progress,
                file=sys.stderr,
            )
            for index in bar:
                clip_id, wave, classes = make_clip(split, index)
                out.add(row_from_wave(clip_id, wave, sample_rate, classes, audio_format))
            writer.close_split(split)
    return Path(out_dir)
