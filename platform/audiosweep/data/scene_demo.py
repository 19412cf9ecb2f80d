"""The embedded scene demo dataset: synthetic, single-label acoustic scenes.

Ten "scenes", named after the TAU Urban Acoustic Scenes classes, each a characteristic mixture
of the demo dataset's sound classes (`data.demo`) over its own kind of background: a scene draws
2-5 unlabelled events from its own weights over those classes, a background spectral slope from
its own range and mains hum with its own probability. Scenes share event types, so (as with
real scenes, e.g. metro vs metro station, street vs public square) some pairs are close and a
model has to weigh the whole mixture, not spot one event.

Clip ``i`` of a split is scene ``i % 10`` (classes balanced in every split) generated from
``numpy.random.default_rng([seed, split, i])``, so any clip can be regenerated on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .demo import SNR_DB, SPLIT_CODES, _background, _events, _place
from .generated import write_generated
from .schema import LabelIndex

# Event classes of `data.demo`, by index: 0 bright tone, 1 hollow tone, 2 soft tone, 3 rumble,
# 4 hiss, 5 rising chirp, 6 falling chirp, 7 knock, 8 regular beeps, 9 irregular beeps.


@dataclass(frozen=True)
class Scene:
    label: str
    weights: tuple[float, ...]  # relative weight of each event class
    slope: tuple[float, float]  # background 1/f^slope, slope drawn in this range
    hum: float  # probability of mains hum
    events: tuple[int, int]  # events per 10 s clip, inclusive range
    snr_db: tuple[float, float] = SNR_DB


SCENES: tuple[Scene, ...] = (
    Scene("airport", (2, 0, 1, 1, 2, 0, 0, 0, 3, 0), (0.8, 1.4), 0.2, (3, 5)),
    Scene("bus", (0, 0, 0, 4, 1, 0, 0, 1, 0, 2), (1.4, 2.0), 0.5, (2, 4)),
    Scene("metro", (0, 1, 0, 4, 2, 1, 1, 0, 0, 0), (1.2, 2.0), 0.8, (2, 4)),
    Scene("metro_station", (0, 2, 0, 3, 1, 0, 0, 1, 2, 0), (1.0, 1.6), 0.6, (3, 5)),
    Scene("park", (0, 0, 4, 0, 1, 2, 2, 0, 0, 0), (0.5, 1.0), 0.0, (2, 4), (-12.0, 6.0)),
    Scene("public_square", (1, 0, 2, 1, 1, 1, 0, 2, 0, 0), (0.6, 1.2), 0.1, (3, 5)),
    Scene("shopping_mall", (3, 2, 1, 0, 0, 0, 0, 1, 1, 0), (0.8, 1.4), 0.3, (3, 5)),
    Scene("street_pedestrian", (0, 0, 1, 1, 1, 0, 0, 4, 0, 1), (0.6, 1.2), 0.0, (3, 5)),
    Scene("street_traffic", (0, 0, 0, 4, 3, 1, 1, 1, 0, 0), (1.0, 1.8), 0.0, (3, 5)),
    Scene("tram", (0, 1, 0, 3, 1, 0, 2, 0, 0, 2), (1.2, 2.0), 0.4, (2, 4)),
)
LABELS = LabelIndex(
    tuple(f"/scene/{s.label}" for s in SCENES), tuple(s.label.replace("_", " ") for s in SCENES)
)


@dataclass(frozen=True)
class SceneClip:
    clip_id: str
    wave: np.ndarray
    label: int


def _scene_background(n: int, sr: int, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """`data.demo`'s coloured noise, with this scene's slope range and hum probability."""
    x = _background(n, sr, rng)  # slope and hum of the generic demo background...
    spectrum = np.fft.rfft(x)
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0)
    # ...tilted towards a slope drawn from the scene's range (relative to the demo's mean 1.25).
    tilt = rng.uniform(*scene.slope) - 1.25
    x = np.fft.irfft(spectrum / (freqs / 1000.0) ** (tilt / 2), n)
    if rng.uniform() < scene.hum:
        t = np.arange(n) / sr
        mains = rng.choice([50.0, 60.0])
        x = x / x.std() + rng.uniform(0.2, 0.6) * sum(
            np.sin(2 * np.pi * mains * h * t) / h for h in (1, 2, 3)
        )
    return x / x.std()


def generate_scene_clip(
    split: str, index: int, *, seed: int = 0, sample_rate: int = 16000, clip_seconds: float = 4.0
) -> SceneClip:
    """Clip ``index`` of ``split``: a float32 waveform in [-1, 1] and its scene index."""
    rng = np.random.default_rng([seed, SPLIT_CODES.get(split, 2), index])
    label = index % len(SCENES)
    scene = SCENES[label]
    sr, n = sample_rate, int(round(clip_seconds * sample_rate))
    mix = _scene_background(n, sr, scene, rng)
    weights = np.asarray(scene.weights, dtype=np.float64)
    lo, hi = scene.events
    scale = min(1.0, clip_seconds / 10.0)
    count = max(1, int(round(rng.integers(lo, hi + 1) * max(scale, 0.5))))
    for cls in rng.choice(len(weights), size=count, p=weights / weights.sum()):
        for where, event in _events(int(cls), sr, clip_seconds, rng):
            rms = np.sqrt(np.mean(event**2)) + 1e-12
            _place(mix, event, where, 10 ** (rng.uniform(*scene.snr_db) / 20) / rms)
    mix *= rng.uniform(0.3, 0.9) / (np.abs(mix).max() + 1e-12)
    return SceneClip(f"scene-{split}-{index:06d}", mix.astype(np.float32), label)


def prepare_scene_demo(
    out_dir: str | os.PathLike,
    *,
    train_clips: int,
    eval_clips: int,
    clip_seconds: float = 4.0,
    sample_rate: int = 16000,
    seed: int = 0,
    shard_mb: float = 256,
    overwrite: bool = False,
    progress: bool | None = None,
    audio_format: str = "flac",
) -> Path:
    """Generate the scene demo dataset (splits ``train`` and ``eval``, single-label)."""

    def make_clip(split: str, index: int) -> tuple[str, np.ndarray, tuple[int, ...]]:
        clip = generate_scene_clip(
            split, index, seed=seed, sample_rate=sample_rate, clip_seconds=clip_seconds
        )
        return clip.clip_id, clip.wave, (clip.label,)

    counts = {"train": int(train_clips), "eval": int(eval_clips)}
    return write_generated(
        out_dir,
        make_clip,
        counts=counts,
        labels=LABELS,
        source={"kind": "scene-demo", "seed": seed, "clips": counts},
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        shard_mb=shard_mb,
        overwrite=overwrite,
        progress=progress,
        name="scene demo",
        task="singlelabel",
        audio_format=audio_format,
    )
