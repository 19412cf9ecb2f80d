"""Audio decoding, mono downmix, resampling and encoding for shard rows."""

from __future__ import annotations

import io
import os
from functools import lru_cache

import numpy as np
import soundfile as sf

ENCODINGS = {
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
}


class AudioDecodeError(ValueError):
    """The bytes or file are not audio that soundfile can decode."""


def decode(source: bytes | str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode any soundfile format to float32 ``(frames, channels)`` and its sample rate."""
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise AudioDecodeError(err.error_string.strip().rstrip(".")) from None
    except (RuntimeError, TypeError, ValueError) as err:
        raise AudioDecodeError(str(err).strip() or type(err).__name__) from None
    return data, int(rate)


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average channels: ``(frames, channels)`` -> ``(frames,)`` float32."""
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0], dtype=np.float32)
    return data.mean(axis=1, dtype=np.float32)


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int):
    import torchaudio

    return torchaudio.transforms.Resample(orig_freq, new_freq)


def resample(wave: np.ndarray, orig_freq: int, new_freq: int) -> np.ndarray:
    """Band-limited resampling (torchaudio) of a ``(..., frames)`` float32 array."""
    if orig_freq == new_freq:
        return wave
    import torch

    with torch.no_grad():
        out = _resampler(int(orig_freq), int(new_freq))(
            torch.from_numpy(np.ascontiguousarray(wave))
        )
    return out.numpy()


def encode(wave: np.ndarray, sample_rate: int, audio_format: str = "flac") -> bytes:
    """Encode mono float32 audio (clipped to [-1, 1]) as FLAC (default), WAV or OGG bytes."""
    try:
        container, subtype = ENCODINGS[audio_format]
    except KeyError:
        raise ValueError(
            f"unknown audio format {audio_format!r} (choose from {', '.join(ENCODINGS)})"
        ) from None
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


def container_of(source: bytes) -> str | None:
    """The lower-case container name soundfile sees in ``source`` (e.g. ``"flac"``), or None."""
    try:
        return sf.info(io.BytesIO(source)).format.lower()
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None


def subtype_of(source: bytes) -> str | None:
    """The sample encoding soundfile sees in ``source`` (e.g. ``"PCM_16"``, ``"FLOAT"``), or None."""
    try:
        return sf.info(io.BytesIO(source)).subtype
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
