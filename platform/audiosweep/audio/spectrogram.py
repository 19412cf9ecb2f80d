"""Spectrogram batch augmentations (B, 1, F, T); test-time augmentation is in `audio.tta`.

- :class:`RandomErasing`: timm's random erasing, per sample with probability p; the DCLS-Audio
  recipe applies it to the linear power spectrogram before the mel filterbank (p = 0.25,
  mode ``"const"``: the erased block becomes 0 power, i.e. the dB floor after the mel scale).
  Its draws come from Python's ``random`` module, as in timm.
- :class:`SpecAugment`: ``n`` time and ``n`` frequency masks (torchaudio's TimeMasking /
  FrequencyMasking, independent per sample, filled with 0), as in SP4ASC on log-mels.
"""

from __future__ import annotations

import torchaudio.transforms as T
from timm.data.random_erasing import RandomErasing as _TimmRandomErasing
from torch import Tensor, nn

__all__ = ["RandomErasing", "SpecAugment"]


def _check_4d(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects a (B, C, F, T) batch, got {tuple(x.shape)}")


class RandomErasing(nn.Module):
    """Erase one random rectangle per sample with probability ``p`` (timm semantics).

    Area fraction uniform in [min_area, max_area], log-uniform aspect ratio in
    [min_aspect, 1 / min_aspect], position uniform; ``mode`` ``"const"`` fills 0, ``"rand"`` one
    normal value per channel, ``"pixel"`` normal noise. ``inplace=False`` leaves the input intact.
    """

    def __init__(
        self,
        p: float = 0.25,
        mode: str = "const",
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_count: int = 1,
        inplace: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if mode not in ("const", "rand", "pixel"):
            raise ValueError(f"mode must be 'const', 'rand' or 'pixel', got {mode!r}")
        self.p = float(p)
        self.inplace = inplace
        self.eraser = _TimmRandomErasing(
            probability=p,
            min_area=min_area,
            max_area=max_area,
            min_aspect=min_aspect,
            mode=mode,
            max_count=max_count,
            device="cpu",
        )

    def forward(self, spec: Tensor) -> Tensor:
        _check_4d(spec, "RandomErasing")
        if self.p == 0.0:
            return spec
        out = spec if self.inplace else spec.clone()
        # timm builds the fill on a fixed device: follow the batch's.
        self.eraser.device = out.device
        return self.eraser(out)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.eraser.mode!r}, inplace={self.inplace}"


class SpecAugment(nn.Module):
    """Time and frequency masking of a (B, C, F, T) batch, masks drawn per sample.

    Each of the ``n_time_masks`` masks covers ``floor(U * time_mask_param)`` frames at a uniform
    position (likewise for frequency); masked cells take ``mask_value``.
    """

    def __init__(
        self,
        n_time_masks: int = 2,
        time_mask_param: int = 128,
        n_freq_masks: int = 2,
        freq_mask_param: int = 32,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        if min(n_time_masks, time_mask_param, n_freq_masks, freq_mask_param) < 0:
            raise ValueError("mask counts and widths must be >= 0")
        self.n_time_masks = n_time_masks
        self.n_freq_masks = n_freq_masks
        self.mask_value = float(mask_value)
        self.time_masking = T.TimeMasking(time_mask_param, iid_masks=True)
        self.freq_masking = T.FrequencyMasking(freq_mask_param, iid_masks=True)

    def forward(self, spec: Tensor) -> Tensor:
        _check_4d(spec, "SpecAugment")
        for _ in range(self.n_time_masks):
            spec = self.time_masking(spec, self.mask_value)
        for _ in range(self.n_freq_masks):
            spec = self.freq_masking(spec, self.mask_value)
        return spec

    def extra_repr(self) -> str:
        return (
            f"n_time_masks={self.n_time_masks}, time_mask_param={self.time_masking.mask_param}, "
            f"n_freq_masks={self.n_freq_masks}, freq_mask_param={self.freq_masking.mask_param}"
        )
