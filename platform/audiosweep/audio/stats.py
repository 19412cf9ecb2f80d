"""Dataset statistics of the log-mel front end (the ``mean``/``std`` used for normalisation)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from audiosweep.audio.frontend import FrontEnd
from audiosweep.config import AudioConfig

__all__ = ["compute_stats"]


def compute_stats(
    batches: Iterable[Mapping],
    config: AudioConfig | None = None,
    *,
    max_clips: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Mean and (population) std of all log-mel dB values of the clips in ``batches``.

    Each batch is a mapping with ``"waveform"``: a float (B, L) array or tensor. The front end is
    ``config`` without normalisation; at most ``max_clips`` clips are used. Batch moments are
    merged in float64 (Chan et al.), so the result does not depend on how clips are batched.
    """
    config = dataclasses.replace(config or AudioConfig(), mean=0.0, std=1.0)
    frontend = FrontEnd(config).to(device).eval()
    count, mean, m2, clips = 0, 0.0, 0.0, 0
    for i, batch in enumerate(batches):
        if "waveform" not in batch:
            raise KeyError(f"batch {i} has no 'waveform' key (keys: {sorted(batch)})")
        wave = batch["waveform"]
        wave = torch.from_numpy(np.asarray(wave)) if not isinstance(wave, torch.Tensor) else wave
        if wave.dim() != 2 or wave.shape[0] == 0:
            raise ValueError(
                f"batch {i}: 'waveform' must be (B, L) with B >= 1, got {tuple(wave.shape)}"
            )
        if max_clips is not None:
            wave = wave[: max_clips - clips]
        clips += wave.shape[0]
        with torch.no_grad():
            values = frontend(wave.to(device)).double()
        n = values.numel()
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        delta = batch_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += batch_m2 + delta * delta * count * n / total
        count = total
        if max_clips is not None and clips >= max_clips:
            break
    if count == 0:
        raise ValueError("no clips in the batches: cannot compute statistics")
    return mean, math.sqrt(m2 / count)
