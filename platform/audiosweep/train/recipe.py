"""The training recipe of a trial, built once per worker from its config: what the model is fed
(waveform augmentation, the log-mel front end, SpecAugment and mixup for training; plain or
test-time augmented probabilities for evaluation), the label type's loss and metrics, and how
the model learns (optimiser and parameter groups, learning-rate schedule, gradient
accumulation and clipping, mixed precision). The worker loop (`loop.py`) uses them step by
step."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.train.task import Task, task_for


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


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.float16 if device.type == "cuda" else None
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs CUDA; use bf16 or none on CPU")
        return torch.float16
    raise ValueError(f"train.amp must be auto, none, bf16 or fp16, not {amp!r}")


def accumulation_steps(cfg: TrialConfig, world: int) -> int:
    per_step = cfg.train.batch_size * world
    effective = cfg.train.effective_batch or per_step
    if effective % per_step:
        raise ValueError(
            f"train.effective_batch={effective} is not a multiple of batch_size × workers = "
            f"{cfg.train.batch_size} × {world} = {per_step}"
        )
    return effective // per_step


def learning_rate(cfg: TrialConfig, world: int) -> float:
    """The explicit lr, else base_lr scaled linearly by effective batch / reference batch."""
    if cfg.optim.lr is not None:
        return cfg.optim.lr
    from audiosweep.train.schedule import scaled_lr

    effective = cfg.train.batch_size * world * accumulation_steps(cfg, world)
    return scaled_lr(cfg.optim.base_lr, effective, reference=cfg.optim.lr_reference_batch)


def build_optimizer(cfg: TrialConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    from audiosweep.models import param_groups

    groups = param_groups(
        model,
        lr=lr,
        weight_decay=cfg.optim.weight_decay,
        position_lr_scale=cfg.optim.position_lr_scale,
    )
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    if cfg.optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    if cfg.optim.name == "lamb":
        from timm.optim import Lamb

        return Lamb(groups, lr=lr, betas=betas)
    raise ValueError(f"optim.name must be adamw or lamb, not {cfg.optim.name!r}")


@dataclass
class Recipe:
    device: torch.device
    inputs: ModelInputs
    task: Task
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # stepped once per optimiser step
    scaler: torch.amp.GradScaler | None  # float16 autocast only
    amp_dtype: torch.dtype | None
    accumulation_steps: int
    batches_per_epoch: int  # the same on every rank: DDP steps in lockstep
    clip_grad: float | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def build_recipe(
    cfg: TrialConfig,
    *,
    device: torch.device,
    model: nn.Module,
    train_rows: int,
    world: int,
) -> Recipe:
    from audiosweep.train.schedule import warmup_cosine

    task = task_for(cfg)
    accum = accumulation_steps(cfg, world)
    batches = (train_rows // world) // cfg.train.batch_size
    batches -= batches % accum
    if batches == 0:
        raise ValueError(
            f"the train split has {train_rows} rows: too few for {world} workers × batch "
            f"{cfg.train.batch_size} × {accum} accumulation steps"
        )
    lr = learning_rate(cfg, world)
    optimizer = build_optimizer(cfg, model, lr)
    steps_per_epoch = batches // accum
    scheduler = warmup_cosine(
        optimizer,
        total_steps=steps_per_epoch * cfg.train.epochs,
        warmup_steps=int(math.ceil(steps_per_epoch * cfg.optim.warmup_epochs)),
        min_lr=cfg.optim.min_lr,
        base_lr=lr,
    )
    amp_dtype = resolve_amp(cfg.train.amp, device)
    return Recipe(
        device=device,
        inputs=build_inputs(cfg, device=device, activation=task.activation),
        task=task,
        loss_fn=task.loss(cfg),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None,
        amp_dtype=amp_dtype,
        accumulation_steps=accum,
        batches_per_epoch=batches,
        clip_grad=cfg.optim.clip_grad,
    )
