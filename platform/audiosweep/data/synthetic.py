"""A quick synthetic dataset for benchmarks: many clips, cheap to generate.

Clip ``i`` is band-limited noise plus a tone, from ``numpy.random.default_rng([seed, i])``,
labelled with 1-3 of the demo classes. It compresses like recorded audio (FLAC at about half
of 16-bit PCM), so reading it costs what reading real clips costs; it is not meant for
training (the demo dataset is).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .demo import LABELS
from .generated import write_generated
from .schema import MANIFEST_NAME, DatasetInfo


def synthetic_clip(i: int, seed: int, frames: int, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng([seed, i])
    noise = rng.standard_normal(frames + 7).astype(np.float32)
    # An 8-tap moving average (a low-pass, first null at sample_rate / 8) gives the noise
    # the falling spectrum of room sound and FLAC something to compress.
    y = np.convolve(noise, np.full(8, 1 / 8, np.float32), mode="valid")
    t = np.arange(frames, dtype=np.float32) / sample_rate
    tone = np.sin(2 * np.pi * rng.uniform(110, 2000) * t, dtype=np.float32)
    wave = 0.1 * y + 0.05 * tone
    return np.clip(wave, -1, 1).astype(np.float32)


def write_synthetic(
    out: str | os.PathLike,
    *,
    clips: int,
    clip_seconds: float = 10.0,
    sample_rate: int = 32000,
    seed: int = 0,
    shard_mb: float = 256,
) -> Path:
    """Write (or reuse, when it already holds ``clips`` train rows) a synthetic dataset."""
    out = Path(out)
    if (out / MANIFEST_NAME).is_file():
        info = DatasetInfo.load(out)
        if info.rows("train") == clips and info.sample_rate == sample_rate:
            return out
    frames = int(round(clip_seconds * sample_rate))

    def make_clip(split: str, i: int) -> tuple[str, np.ndarray, tuple[int, ...]]:
        rng = np.random.default_rng([seed, i, 1])
        labels = tuple(rng.choice(len(LABELS), size=rng.integers(1, 4), replace=False))
        return f"syn{i:07d}", synthetic_clip(i, seed, frames, sample_rate), labels

    return write_generated(
        out,
        make_clip,
        counts={"train": clips},
        labels=LABELS,
        source={"kind": "synthetic", "seed": seed},
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        shard_mb=shard_mb,
        overwrite=True,
        progress=False,
    )
