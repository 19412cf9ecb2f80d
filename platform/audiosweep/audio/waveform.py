"""Waveform augmentations on float batches (B, L), in the reference order:
PadOrTruncate -> RandomRoll -> SpeedPerturbation.

Each random module draws from its ``generator`` (a CPU ``torch.Generator``) when given, else
from torch's global RNG; draws happen on the CPU, so a seed gives the same augmentation on any
device. Decisions (apply or not, shift, rate, offset) are made per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PadOrTruncate",
    "RandomRoll",
    "SpeedPerturbation",
    "WaveformAugment",
]


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """n uniform [0, 1) float64 draws from the CPU generator, moved to ``device``."""
    return torch.rand(n, generator=generator, dtype=torch.float64).to(device)


def _check_batch(x: Tensor, name: str) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} expects a (B, L) waveform batch, got {tuple(x.shape)}")


class PadOrTruncate(nn.Module):
    """Zero-pad at the end or keep the first ``length`` samples, along the last axis.

    Accepts a tensor (..., L) or a sequence of 1-D tensors of any lengths (stacked to (B, length)).
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = int(length)

    def _one(self, x: Tensor) -> Tensor:
        n = x.shape[-1]
        if n >= self.length:
            return x[..., : self.length]
        return F.pad(x, (0, self.length - n))

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        if isinstance(x, Tensor):
            return self._one(x)
        return torch.stack([self._one(torch.as_tensor(w)) for w in x])

    def extra_repr(self) -> str:
        return f"length={self.length}"


class RandomRoll(nn.Module):
    """Circular shift of each sample by an integer drawn uniformly in [-L, L), with probability p."""

    def __init__(self, p: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)
        self.generator = generator

    def sample_shifts(self, batch: int, length: int, device: torch.device) -> Tensor:
        apply = _rand(batch, self.generator, device) < self.p
        shifts = (_rand(batch, self.generator, device) * 2 * length).long() - length
        return torch.where(apply, shifts, torch.zeros_like(shifts))

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(x, "RandomRoll")
        batch, length = x.shape
        shifts = self.sample_shifts(batch, length, x.device)
        # out[i] = torch.roll(x[i], shift_i) as two slice copies per row. A gather through a
        # (B, L) int64 index moves three times the bytes: at (32, 81920) float32 on one
        # thread 21.5 ms instead of 5.5 ms, and far more while training trials share the cores.
        out = torch.empty_like(x)
        for i, shift in enumerate(torch.remainder(shifts, length).tolist()):
            out[i, shift:] = x[i, : length - shift]
            out[i, :shift] = x[i, length - shift :]
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpeedPerturbation(nn.Module):
    """Resample each sample by a rate drawn uniformly in ``rates``, then pad/crop back to L.

    A rate r stretches the signal to ceil(L * r) samples (r > 1 slows it down and lowers its
    pitch); output sample k of the stretched signal is input sample round(k / r)
    (``interpolation="nearest"``) or the linear interpolation at k / r (``"linear"``). A longer
    result is cropped at a uniformly drawn start, a shorter one zero-padded with a uniformly
    drawn left margin. Samples not selected (probability 1 - p) pass unchanged.
    """

    INTERPOLATIONS = ("nearest", "linear")

    def __init__(
        self,
        p: float = 0.5,
        rates: tuple[float, float] = (0.5, 1.5),
        interpolation: str = "nearest",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        low, high = (float(r) for r in rates)
        if not 0.0 < low <= high:
            raise ValueError(f"rates must satisfy 0 < low <= high, got {rates}")
        if interpolation not in self.INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {self.INTERPOLATIONS}")
        self.p = float(p)
        self.rates = (low, high)
        self.interpolation = interpolation
        self.generator = generator

    def sample_params(
        self, batch: int, length: int, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample (applied, rate, offset); stretched index = output index + offset."""
        apply = _rand(batch, self.generator, device) < self.p
        low, high = self.rates
        rate = low + (high - low) * _rand(batch, self.generator, device)
        stretched = torch.ceil(length * rate)
        spare = (stretched - length).abs()
        # Uniform integer in [0, spare]: a crop start if longer, a left margin if shorter.
        draw = torch.floor(_rand(batch, self.generator, device) * (spare + 1))
        offset = torch.where(stretched >= length, draw, -draw)
        return apply, rate, offset

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(x, "SpeedPerturbation")
        batch, length = x.shape
        # Parameters stay on the CPU: the loop below reads them as Python numbers.
        apply, rate, offset = self.sample_params(batch, length, torch.device("cpu"))
        if not bool(apply.any()):
            return x
        out = x.clone()
        for i in apply.nonzero().flatten().tolist():
            r, off = float(rate[i]), int(offset[i])
            # Output j shows stretched sample j + off, which exists for 0 <= j + off < ceil(L r).
            start = max(0, -off)
            stop = min(length, math.ceil(length * r) - off)
            k = torch.arange(start + off, stop + off, device=x.device, dtype=torch.float64)
            out[i, :start] = 0.0
            out[i, stop:] = 0.0
            out[i, start:stop] = self._resample(x[i], k / r)
        return out

    def _resample(self, row: Tensor, source: Tensor) -> Tensor:
        """``row`` read at fractional positions ``source`` (float64, kept in [0, L - 1])."""
        source = source.clamp_(0, row.shape[0] - 1)
        if self.interpolation == "nearest":
            return row[source.round_().long()]
        left = source.floor()
        frac = (source - left).to(row.dtype)
        left = left.long()
        right = (left + 1).clamp_(max=row.shape[0] - 1)
        return torch.lerp(row[left], row[right], frac)

    def extra_repr(self) -> str:
        return f"p={self.p}, rates={self.rates}, interpolation={self.interpolation!r}"


class WaveformAugment(nn.Module):
    """PadOrTruncate -> RandomRoll -> SpeedPerturbation on a (B, L) batch; each stage switchable.

    ``length`` is clip_seconds * sample_rate. Picklable (for Ray Data ``map_batches``); with
    ``seed`` set, one generator feeds every stage, so the same seed and the same batches give the
    same output. Copies made by pickling continue the same stream: call :meth:`reseed` with a
    distinct seed per worker to decorrelate them. A NumPy batch comes back as NumPy, a tensor as
    a tensor.
    """

    def __init__(
        self,
        length: int = 320_000,
        *,
        pad_or_truncate: bool = True,
        roll: bool = True,
        roll_p: float = 1.0,
        speed: bool = True,
        speed_p: float = 0.5,
        speed_rates: tuple[float, float] = (0.5, 1.5),
        speed_interpolation: str = "nearest",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.length = length
        self.pad_or_truncate = pad_or_truncate
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        stages: list[nn.Module] = []
        if pad_or_truncate:
            stages.append(PadOrTruncate(length))
        if roll:
            stages.append(RandomRoll(p=roll_p, generator=self.generator))
        if speed:
            stages.append(
                SpeedPerturbation(
                    p=speed_p,
                    rates=tuple(speed_rates),
                    interpolation=speed_interpolation,
                    generator=self.generator,
                )
            )
        self.stages = nn.ModuleList(stages)

    def reseed(self, seed: int) -> None:
        """Restart every stage's random stream from ``seed``."""
        self.generator = torch.Generator().manual_seed(seed)
        for stage in self.stages:
            if hasattr(stage, "generator"):
                stage.generator = self.generator

    @torch.no_grad()
    def forward(self, batch: Tensor | np.ndarray) -> Tensor | np.ndarray:
        as_numpy = isinstance(batch, np.ndarray)
        x = torch.from_numpy(batch) if as_numpy else batch
        if x.dim() != 2 or not x.dtype.is_floating_point:
            raise ValueError(
                f"WaveformAugment expects a float (B, L) batch, got {x.dtype} {tuple(x.shape)}"
            )
        for stage in self.stages:
            x = stage(x)
        return x.numpy() if as_numpy else x

    @property
    def output_length(self) -> int | None:
        return self.length if self.pad_or_truncate else None
