"""How the model learns: the optimiser and its parameter groups, the learning-rate schedule,
gradient accumulation and clipping, mixed precision."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.models import clamp_dcls_positions


@dataclass
class Optimisation:
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    accumulation_steps: int
    batches_per_epoch: int
    clip_grad: float | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, model: nn.Module) -> None:
        if self.clip_grad:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        # Keep learned kernel positions inside the dilated kernel, as dcls's recipe does.
        with torch.no_grad():
            clamp_dcls_positions(model)


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


def build_optimisation(
    cfg: TrialConfig,
    *,
    device: torch.device,
    model: nn.Module,
    train_rows: int,
    world: int,
) -> Optimisation:
    from audiosweep.train.schedule import warmup_cosine

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
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    return Optimisation(
        device=device,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        accumulation_steps=accum,
        batches_per_epoch=batches,
        clip_grad=cfg.optim.clip_grad,
    )
