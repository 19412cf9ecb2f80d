"""Shard rows -> fixed-length float32 waveforms and multi-hot float32 targets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import audio_io


def multi_hot(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    target = np.zeros((len(labels), num_classes), dtype=np.float32)
    for row, indices in enumerate(labels):
        target[row, np.asarray(indices, dtype=np.int64)] = 1.0
    return target


def decode_rows(
    audio: Sequence[bytes],
    sample_rates: Sequence[int],
    labels: Sequence[Sequence[int]],
    *,
    sample_rate: int,
    frames: int,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a batch: ``(B, frames)`` waveforms at ``sample_rate`` and ``(B, C)`` targets.

    Rows stored at another rate are resampled, multi-channel rows averaged to mono, and
    each clip zero-padded or truncated to ``frames``.
    """
    waveform = np.zeros((len(audio), frames), dtype=np.float32)
    for row, (data, rate) in enumerate(zip(audio, sample_rates, strict=True)):
        wave, file_rate = audio_io.decode(bytes(data))
        wave = audio_io.to_mono(wave)
        if file_rate != int(rate):
            raise audio_io.AudioDecodeError(
                f"row {row}: audio is {file_rate} Hz but its sample_rate column says {rate}"
            )
        wave = audio_io.resample(wave, file_rate, sample_rate)
        keep = min(wave.shape[0], frames)
        waveform[row, :keep] = wave[:keep]
    return waveform, multi_hot(labels, num_classes)
