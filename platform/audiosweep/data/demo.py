"""The embedded demo dataset: synthetic, multi-label, AudioSet-like clips.

Each clip holds 1-3 of the classes below (40 % one, 40 % two, 20 % three), placed at
random onsets over coloured background noise (spectral slope 1/f^0.5 to 1/f^2, sometimes
with mains hum), each event at its own SNR drawn from +4 to +20 dB against the
background RMS. Half of the clips also hold unlabelled distractors (inharmonic bell
strikes, or one or two lone beeps when no beep class is present), so that a model must
attend to what defines a class rather than to any energy in a band.

Classes (``/demo/...`` MIDs; lengths quoted for 10 s clips):

0. ``tone_bright`` - bright harmonic tone: every harmonic at 1/k (sawtooth-like),
   f0 110-660 Hz, 0.4-2 s, light vibrato, 1-2 notes.
1. ``tone_hollow`` - hollow harmonic tone: odd harmonics only at 1/k (square-like);
   pitch, length and envelope drawn exactly as for ``tone_bright``.
2. ``tone_soft`` - soft harmonic tone: four weak, fast-decaying harmonics (sine-like,
   flute-like); same pitch, length and envelope distributions.
3. ``rumble`` - low band noise, centre 150-600 Hz, about one octave wide, 1-4 s,
   slowly fading and amplitude-modulated.
4. ``hiss`` - high band noise, centre 3-6 kHz, about one octave wide, 0.5-3 s.
5. ``chirp_up`` - rising exponential sweeps over 1-2 octaves starting at 300-1200 Hz,
   0.25-0.8 s each, 1-3 of them.
6. ``chirp_down`` - the same sweeps falling.
7. ``knock`` - bursts of 2-5 impacts 0.12-0.35 s apart, each two damped resonances
   (150-900 Hz) plus a short click.
8. ``beeps_regular`` - 4-6 identical short beeps (60-120 ms, 1-2.5 kHz) at a steady
   period of 15-22 % of the clip (1.5-2.2 s).
9. ``beeps_irregular`` - the same beeps, the same count, first and last onsets drawn
   the same way, but the inner beeps at random times (at least one interval off the
   period by 25 %). Only the rhythm, spanning several seconds, separates 8 from 9;
   they never occur together.

Clip ``i`` of a split is generated from ``numpy.random.default_rng([seed, split, i])``,
so any clip can be regenerated on its own (:func:`generate_clip`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .generated import write_generated
from .schema import DEFAULT_CLIP_SECONDS, DEFAULT_SAMPLE_RATE, LabelIndex

CLASSES: tuple[tuple[str, str], ...] = (
    ("/demo/tone_bright", "Bright harmonic tone"),
    ("/demo/tone_hollow", "Hollow harmonic tone"),
    ("/demo/tone_soft", "Soft harmonic tone"),
    ("/demo/rumble", "Low rumble"),
    ("/demo/hiss", "Hiss"),
    ("/demo/chirp_up", "Rising chirp"),
    ("/demo/chirp_down", "Falling chirp"),
    ("/demo/knock", "Knocking"),
    ("/demo/beeps_regular", "Regular beeps"),
    ("/demo/beeps_irregular", "Irregular beeps"),
)
LABELS = LabelIndex(tuple(m for m, _ in CLASSES), tuple(n for _, n in CLASSES))
SPLIT_CODES = {"train": 0, "eval": 1}
EVENT_COUNT_PROBS = (0.4, 0.4, 0.2)
SNR_DB = (4.0, 20.0)
BEEPS_REGULAR, BEEPS_IRREGULAR = 8, 9
WAVETABLE_SIZE = 2048


@dataclass(frozen=True)
class DemoClip:
    clip_id: str
    wave: np.ndarray
    labels: tuple[int, ...]


# ---- building blocks -------------------------------------------------------------------


def _wavetable(amplitudes: np.ndarray) -> np.ndarray:
    """One period of sum_k a_k sin(2 pi k x), with a wrap-around sample for interpolation."""
    k = np.arange(1, len(amplitudes) + 1)[:, None]
    x = np.arange(WAVETABLE_SIZE + 1)[None, :] / WAVETABLE_SIZE
    return (amplitudes[:, None] * np.sin(2 * np.pi * k * x)).sum(axis=0)


def _oscillate(
    freq: np.ndarray, amplitudes: np.ndarray, sr: int, phase0: float = 0.0
) -> np.ndarray:
    """Wavetable oscillator following the instantaneous frequency ``freq`` (Hz per sample)."""
    phase = (phase0 + np.cumsum(freq) / sr) % 1.0
    return np.interp(phase * WAVETABLE_SIZE, np.arange(WAVETABLE_SIZE + 1), _wavetable(amplitudes))


def _band_limit(amplitudes: np.ndarray, f_max: float, sr: int) -> np.ndarray:
    keep = max(1, int(0.45 * sr / f_max))
    return amplitudes[:keep]


def _adsr(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    attack = min(n // 3, int(rng.uniform(0.01, 0.08) * sr))
    release = min(n // 3, int(rng.uniform(0.05, 0.3) * sr))
    sustain = rng.uniform(0.5, 0.9)
    env = np.full(n, sustain)
    env[:attack] = np.linspace(0.0, 1.0, attack, endpoint=False)
    decay = min(n - attack - release, int(0.1 * sr))
    env[attack : attack + decay] = np.linspace(1.0, sustain, decay, endpoint=False)
    if release:
        env[n - release :] *= np.linspace(1.0, 0.0, release)
    return env


def _fade(n: int, fade: int) -> np.ndarray:
    env = np.ones(n)
    fade = min(fade, n // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        env[:fade] = ramp
        env[n - fade :] = ramp[::-1]
    return env


def _band_noise(
    n: int, sr: int, centre: float, octaves: float, rng: np.random.Generator
) -> np.ndarray:
    """White noise shaped by a Gaussian band in log-frequency."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    with np.errstate(divide="ignore"):
        distance = np.log2(np.maximum(freqs, 1.0) / centre) / (octaves / 2)
    return np.fft.irfft(spectrum * np.exp(-0.5 * distance**2), n)


def _seconds(rng: np.random.Generator, lo: float, hi: float, clip: float) -> float:
    """A duration in [lo, hi] seconds, shrunk for clips shorter than 10 s."""
    scale = min(1.0, clip / 10.0)
    return rng.uniform(lo, hi) * max(scale, 0.2)


# ---- classes ---------------------------------------------------------------------------

TIMBRES = {
    0: lambda k: 1.0 / k,  # every harmonic
    1: lambda k: np.where(k % 2 == 1, 1.0 / k, 0.0),  # odd harmonics only
    2: lambda k: np.where(k <= 4, 0.35 ** (k - 1), 0.0),  # nearly a sine
}


def _tone(
    cls: int, sr: int, clip: float, rng: np.random.Generator
) -> list[tuple[float, np.ndarray]]:
    events = []
    for _ in range(rng.integers(1, 3)):
        n = int(_seconds(rng, 0.4, 2.0, clip) * sr)
        f0 = float(np.exp(rng.uniform(np.log(110.0), np.log(660.0))))
        depth = rng.uniform(0.0, 0.01)
        t = np.arange(n) / sr
        freq = f0 * (1.0 + depth * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t))
        k = np.arange(1, 64, dtype=np.float64)
        amps = _band_limit(TIMBRES[cls](k), f0 * (1 + depth), sr)
        events.append(
            (rng.uniform(), _oscillate(freq, amps, sr, rng.uniform()) * _adsr(n, sr, rng))
        )
    return events


def _noise(
    cls: int, sr: int, clip: float, rng: np.random.Generator
) -> list[tuple[float, np.ndarray]]:
    if cls == 3:
        n, centre = int(_seconds(rng, 1.0, 4.0, clip) * sr), rng.uniform(150.0, 600.0)
    else:
        n, centre = (
            int(_seconds(rng, 0.5, 3.0, clip) * sr),
            min(rng.uniform(3000.0, 6000.0), 0.3 * sr),
        )
    x = _band_noise(n, sr, centre, rng.uniform(0.8, 1.2), rng)
    t = np.arange(n) / sr
    wobble = 1.0 - rng.uniform(0.0, 0.5) * (
        0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * t)
    )
    return [(rng.uniform(), x * wobble * _fade(n, int(rng.uniform(0.1, 0.5) * n / 2)))]


def _chirp(
    cls: int, sr: int, clip: float, rng: np.random.Generator
) -> list[tuple[float, np.ndarray]]:
    events = []
    for _ in range(rng.integers(1, 4)):
        n = max(int(_seconds(rng, 0.25, 0.8, clip) * sr), 16)
        lo = rng.uniform(300.0, 1200.0)
        hi = min(lo * 2 ** rng.uniform(1.0, 2.0), 0.4 * sr)
        ramp = (hi / lo) ** (np.arange(n) / n)
        freq = lo * (ramp if cls == 5 else ramp[::-1])
        x = _oscillate(freq, np.array([1.0, 0.3]), sr, rng.uniform())
        events.append((rng.uniform(), x * _fade(n, int(0.01 * sr))))
    return events


def _knock(sr: int, clip: float, rng: np.random.Generator) -> list[tuple[float, np.ndarray]]:
    hits = int(rng.integers(2, 6))
    gaps = rng.uniform(0.12, 0.35, size=hits - 1) * min(1.0, max(clip / 10.0, 0.3))
    onsets = np.concatenate([[0.0], np.cumsum(gaps)])
    f1 = rng.uniform(150.0, 900.0)
    f2 = min(f1 * rng.uniform(1.5, 2.7), 0.45 * sr)
    tau = rng.uniform(0.015, 0.06)
    hit_len = int(5 * tau * sr)
    t = np.arange(hit_len) / sr
    click_len = int(0.002 * sr)
    burst = np.zeros(int(onsets[-1] * sr) + hit_len)
    for onset in onsets:
        hit = np.exp(-t / tau) * (np.sin(2 * np.pi * f1 * t) + 0.6 * np.sin(2 * np.pi * f2 * t))
        hit[:click_len] += rng.standard_normal(click_len) * np.linspace(1.0, 0.0, click_len)
        start = int(onset * sr)
        burst[start : start + hit_len] += hit * rng.uniform(0.6, 1.0)
    return [(rng.uniform(), burst)]


def _beep(sr: int, freq: float, length: float) -> np.ndarray:
    n = int(length * sr)
    x = _oscillate(np.full(n, freq), np.array([1.0, 0.3]), sr)
    return x * np.hanning(n)


def _beep_onsets(regular: bool, clip: float, rng: np.random.Generator) -> np.ndarray:
    count = int(rng.integers(4, 7))
    period = rng.uniform(0.15, 0.22) * clip
    while (count - 1) * period > 0.85 * clip:
        count -= 1
    span = (count - 1) * period
    first = rng.uniform(0.0, clip * 0.9 - span)
    if regular:
        jitter = rng.uniform(-0.01, 0.01, size=count) * period
        jitter[0] = jitter[-1] = 0.0
        return first + np.arange(count) * period + jitter
    min_gap = 0.25 * period
    for _ in range(1000):
        inner = np.sort(rng.uniform(min_gap, span - min_gap, size=count - 2))
        onsets = np.concatenate([[0.0], inner, [span]])
        gaps = np.diff(onsets)
        if gaps.min() >= min_gap and np.abs(gaps - period).max() >= 0.25 * period:
            return first + onsets
    raise RuntimeError("could not draw an irregular beep pattern")


def _beeps(
    cls: int, sr: int, clip: float, rng: np.random.Generator
) -> list[tuple[float, np.ndarray]]:
    freq = rng.uniform(1000.0, 2500.0)
    length = rng.uniform(0.06, 0.12) * min(1.0, max(clip / 10.0, 0.5))
    beep = _beep(sr, freq, length)
    onsets = _beep_onsets(cls == BEEPS_REGULAR, clip, rng)
    first = onsets[0]
    train = np.zeros(int((onsets[-1] - first) * sr) + len(beep))
    for onset in onsets:
        start = int((onset - first) * sr)
        train[start : start + len(beep)] += beep
    # The onset is fixed by the pattern (it already spans most of the clip).
    return [(first / max(clip - len(train) / sr, 1e-9), train)]


def _bell(sr: int, clip: float, rng: np.random.Generator) -> np.ndarray:
    n = int(_seconds(rng, 0.5, 1.5, clip) * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(200.0, 900.0)
    x = np.zeros(n)
    for ratio, weight in ((1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25)):
        if f0 * ratio < 0.45 * sr:
            x += (
                weight
                * np.sin(2 * np.pi * f0 * ratio * t)
                * np.exp(-t * rng.uniform(2.0, 8.0) * ratio**0.5)
            )
    return x


def _events(
    cls: int, sr: int, clip: float, rng: np.random.Generator
) -> list[tuple[float, np.ndarray]]:
    if cls in TIMBRES:
        return _tone(cls, sr, clip, rng)
    if cls in (3, 4):
        return _noise(cls, sr, clip, rng)
    if cls in (5, 6):
        return _chirp(cls, sr, clip, rng)
    if cls == 7:
        return _knock(sr, clip, rng)
    return _beeps(cls, sr, clip, rng)


def _background(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    slope = rng.uniform(0.5, 2.0)
    x = np.fft.irfft(spectrum / np.maximum(freqs, 20.0) ** (slope / 2), n)
    if rng.uniform() < 0.3:
        mains = rng.choice([50.0, 60.0])
        t = np.arange(n) / sr
        hum = sum(np.sin(2 * np.pi * mains * h * t) / h for h in (1, 2, 3))
        x = x / x.std() + rng.uniform(0.2, 0.6) * hum
    return x / x.std()


def _place(mix: np.ndarray, event: np.ndarray, where: float, gain: float) -> None:
    event = event[: len(mix)]
    start = int(min(max(where, 0.0), 1.0) * (len(mix) - len(event)))
    mix[start : start + len(event)] += gain * event


def _pick_classes(rng: np.random.Generator) -> list[int]:
    count = int(rng.choice(len(EVENT_COUNT_PROBS), p=EVENT_COUNT_PROBS)) + 1
    while True:
        picked = sorted(rng.choice(len(CLASSES), size=count, replace=False).tolist())
        if not (BEEPS_REGULAR in picked and BEEPS_IRREGULAR in picked):
            return picked


def generate_clip(
    split: str,
    index: int,
    *,
    seed: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
) -> DemoClip:
    """Clip ``index`` of ``split``: a float32 waveform in [-1, 1] and its class indices."""
    rng = np.random.default_rng([seed, SPLIT_CODES.get(split, 2), index])
    sr, n = sample_rate, int(round(clip_seconds * sample_rate))
    mix = _background(n, sr, rng)
    classes = _pick_classes(rng)
    for cls in classes:
        for where, event in _events(cls, sr, clip_seconds, rng):
            rms = np.sqrt(np.mean(event**2)) + 1e-12
            _place(mix, event, where, 10 ** (rng.uniform(*SNR_DB) / 20) / rms)
    if rng.uniform() < 0.5:
        if rng.uniform() < 0.5 or BEEPS_REGULAR in classes or BEEPS_IRREGULAR in classes:
            distractors = [_bell(sr, clip_seconds, rng) for _ in range(rng.integers(1, 3))]
        else:
            freq, length = rng.uniform(1000.0, 2500.0), rng.uniform(0.06, 0.12)
            distractors = [_beep(sr, freq, length) for _ in range(rng.integers(1, 3))]
        for event in distractors:
            rms = np.sqrt(np.mean(event**2)) + 1e-12
            _place(mix, event, rng.uniform(), 10 ** (rng.uniform(*SNR_DB) / 20) / rms)
    mix *= rng.uniform(0.3, 0.9) / (np.abs(mix).max() + 1e-12)
    return DemoClip(f"demo-{split}-{index:06d}", mix.astype(np.float32), tuple(classes))


def prepare_demo(
    out_dir: str | os.PathLike,
    *,
    train_clips: int,
    eval_clips: int,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    seed: int = 0,
    shard_mb: float = 256,
    overwrite: bool = False,
    progress: bool | None = None,
    audio_format: str = "flac",
) -> Path:
    """Generate the demo dataset (splits ``train`` and ``eval``) into ``out_dir``."""

    def make_clip(split: str, index: int) -> tuple[str, np.ndarray, tuple[int, ...]]:
        clip = generate_clip(
            split, index, seed=seed, sample_rate=sample_rate, clip_seconds=clip_seconds
        )
        return clip.clip_id, clip.wave, clip.labels

    counts = {"train": int(train_clips), "eval": int(eval_clips)}
    return write_generated(
        out_dir,
        make_clip,
        counts=counts,
        labels=LABELS,
        source={"kind": "demo", "seed": seed, "clips": counts},
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        shard_mb=shard_mb,
        overwrite=overwrite,
        progress=progress,
        name="demo",
        audio_format=audio_format,
    )
