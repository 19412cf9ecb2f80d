"""Turn one source clip (file or bytes plus MIDs) into a shard row, or say why not."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import audio_io
from .writer import Rejection, Row

# A clip whose peak stays below -80 dBFS (about 3 int16 steps) holds no usable sound: the
# zero rows a packing script leaves for clips it could not find look like this.
SILENT_PEAK = 1e-4
# Float sources can hold samples beyond full scale, which the shards' 16-bit encoding would
# flatten; more than this fraction of them means a mis-scaled or saturated clip. (A lossy
# decoder's overshoot on loud clips touches far fewer samples.)
CLIPPED_FRACTION = 0.01


@dataclass(frozen=True)
class ClipSource:
    """A clip as an ingest finds it: audio as a path or bytes (None when not found)."""

    clip_id: str
    audio: bytes | Path | None
    mids: tuple[str, ...]
    where: str = ""


@dataclass(frozen=True)
class RowSpec:
    """How rows are made: target sample rate, audio encoding and the MID -> index map."""

    sample_rate: int
    audio_format: str
    label_ids: dict[str, int]


def make_row(source: ClipSource, spec: RowSpec) -> Row | Rejection:
    """Validate labels, decode, downmix, resample and encode one clip."""
    clip_id = source.clip_id
    where = f" ({source.where})" if source.where else ""
    if not source.mids:
        return Rejection(clip_id, "no_labels", f"no labels{where}")
    unknown = [m for m in source.mids if m not in spec.label_ids]
    if unknown:
        return Rejection(clip_id, "unknown_label", f"unknown label(s) {', '.join(unknown)}{where}")
    labels = tuple(sorted({spec.label_ids[m] for m in source.mids}))

    audio = source.audio
    if audio is None:
        return Rejection(clip_id, "missing", f"no audio found{where}")
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            return Rejection(clip_id, "missing", f"{path} does not exist")
        if path.stat().st_size == 0:
            return Rejection(clip_id, "empty", f"{path} is an empty file")
        raw: bytes = path.read_bytes()
    else:
        raw = bytes(audio)
        if not raw:
            return Rejection(clip_id, "empty", f"zero audio bytes{where}")
    try:
        data, rate = audio_io.decode(raw)
    except audio_io.AudioDecodeError as err:
        return Rejection(clip_id, "corrupt", f"cannot decode{where}: {err}")
    if data.shape[0] == 0:
        return Rejection(clip_id, "empty", f"audio has no frames{where}")
    if not np.isfinite(data).all():
        return Rejection(clip_id, "corrupt", f"audio holds NaN or infinite samples{where}")
    level = _level_problem(data)
    if level is not None:
        return Rejection(clip_id, level[0], f"{level[1]}{where}")

    keep_bytes = (
        rate == spec.sample_rate
        and data.shape[1] == 1
        and audio_io.container_of(raw) == spec.audio_format
        # Float WAV (how a float waveform arrives) is twice the size of the 16-bit shards.
        and not (spec.audio_format == "wav" and audio_io.subtype_of(raw) in ("FLOAT", "DOUBLE"))
    )
    if keep_bytes:
        return Row(clip_id, raw, rate, int(data.shape[0]), labels)
    wave = audio_io.resample(audio_io.to_mono(data), rate, spec.sample_rate)
    encoded = audio_io.encode(wave, spec.sample_rate, spec.audio_format)
    return Row(clip_id, encoded, spec.sample_rate, int(wave.shape[-1]), labels)


def _level_problem(data: np.ndarray) -> tuple[str, str] | None:
    """("silent" | "clipped", detail) when the decoded samples are unusable, else None."""
    magnitude = np.abs(data)
    peak = float(magnitude.max())
    if peak < SILENT_PEAK:
        return "silent", f"peak {peak:.1e} (below -80 dBFS)"
    over = float(np.count_nonzero(magnitude >= 1.0)) / magnitude.size
    if over > CLIPPED_FRACTION:
        return "clipped", f"{over:.1%} of samples at or beyond full scale (peak {peak:.3g})"
    return None


def convert(item: ClipSource | Rejection, spec: RowSpec) -> Row | Rejection:
    """A row, or the reason the clip is not one (a source may arrive already rejected)."""
    return item if isinstance(item, Rejection) else make_row(item, spec)


def row_from_wave(
    clip_id: str, wave: np.ndarray, sample_rate: int, labels: tuple[int, ...], audio_format: str
) -> Row:
    """A row from an already generated mono waveform at the dataset sample rate."""
    encoded = audio_io.encode(wave, sample_rate, audio_format)
    return Row(clip_id, encoded, sample_rate, int(wave.shape[-1]), tuple(sorted(set(labels))))
