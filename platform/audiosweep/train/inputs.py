"""What the model is fed: waveform augmentation, the log-mel front end, SpecAugment and mixup
for training; the plain or test-time augmented probabilities for evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audiosweep.config import TrialConfig


@dataclass
class ModelInputs:
    frontend: nn.Module
    waveform_augment: nn.Module | None
    spec_augment: nn.Module | None
    mixup: Any
    tta_views: int
    train_spec_augment: bool
    activation: str  # the task's: "sigmoid" (multi-label) or "softmax" (single-label)

    def train_inputs(
        self, waveform: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference order: roll → speed → spectrogram (+erasing) → mel → dB → norm → mixup."""
        if self.waveform_augment is not None:
            waveform = self.waveform_augment(waveform)
        spec = self.frontend(waveform, augment=True)
        if self.spec_augment is not None and self.train_spec_augment:
            spec = self.spec_augment(spec)
        if self.mixup is not None:
            spec, target = self.mixup(spec, target)
        return spec, target

    def predict(
        self,
        model: nn.Module,
        waveform: torch.Tensor,
        *,
        tta: bool = False,
        seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Eval probabilities (the task's activation) under ``""``; with ``tta`` and
        ``tta_views`` > 0 also their mean over that many SpecAugment draws, under ``"_tta"``."""
        from audiosweep.audio.tta import test_time_augment

        spec = self.frontend(waveform, augment=False)
        act = self.activation
        out = {"": test_time_augment(model, spec, 0, activation=act)}
        if tta and self.has_tta:
            out["_tta"] = test_time_augment(
                model, spec, self.tta_views, augment=self.spec_augment, activation=act, seed=seed
            )
        return out

    @property
    def has_tta(self) -> bool:
        return self.tta_views > 0 and self.spec_augment is not None


def freq_mask_width(cfg: TrialConfig) -> int:
    """Widest SpecAugment frequency mask in mel bins."""
    fraction = cfg.augment.freq_mask_fraction
    if fraction is None:
        return cfg.augment.freq_mask_width
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"augment.freq_mask_fraction must be in [0, 1], not {fraction}")
    return int(round(fraction * cfg.audio.n_mels))


def build_inputs(cfg: TrialConfig, *, device: torch.device, activation: str) -> ModelInputs:
    from audiosweep.audio import FrontEnd, RandomErasing, SpecAugment, WaveformAugment
    from audiosweep.train.mixup import MixupWithSmoothing

    aug = cfg.augment
    frontend = FrontEnd(
        cfg.audio,
        # The reference erases on the linear power spectrogram, before the mel filterbank.
        linear_augment=RandomErasing(p=aug.erasing_p, inplace=True) if aug.erasing_p > 0 else None,
    ).to(device)
    waveform_augment = WaveformAugment(
        length=cfg.clip_samples(),
        roll=aug.roll,
        speed=aug.speed_p > 0,
        speed_p=aug.speed_p,
        speed_rates=(aug.speed_min, aug.speed_max),
    )
    spec_augment = (
        SpecAugment(
            n_time_masks=aug.time_masks,
            time_mask_param=aug.time_mask_width,
            n_freq_masks=aug.freq_masks,
            freq_mask_param=freq_mask_width(cfg),
        )
        if aug.specaugment or aug.tta_views > 0
        else None
    )
    mixup = (
        MixupWithSmoothing(alpha=aug.mixup_alpha, smoothing=aug.label_smoothing)
        if aug.mixup_alpha > 0
        else None
    )
    return ModelInputs(
        frontend=frontend,
        waveform_augment=waveform_augment,
        spec_augment=spec_augment,
        mixup=mixup,
        tta_views=aug.tta_views,
        train_spec_augment=aug.specaugment,
        activation=activation,
    )
