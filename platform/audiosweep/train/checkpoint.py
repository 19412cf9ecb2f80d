"""Training-state checkpoints that load without unpickling arbitrary objects.

Everything saved is tensors, numbers, strings and containers of them, so
``torch.load(..., weights_only=True)`` reads it back; the final model weights are also
written as safetensors for use outside training.

A checkpoint is taken after an epoch and holds what the next epoch starts from: weights,
optimizer, schedule, gradient scaler, epoch. It holds no random-number state on purpose: every
worker re-seeds every generator at the start of each epoch from (seed, rank, epoch)
(`train/seeding.py`), and the train split's order and draws are planned from (seed, epoch), so
a resumed epoch draws what the uninterrupted one drew, on any node. (One process's generator
state would be wrong for the other ranks, and restoring it would be overwritten at once.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_FILE = "state.pt"
MODEL_FILE = "model.safetensors"
MODEL_EMA_FILE = "model_ema.safetensors"  # the final EMA weights, when train.ema_decay is set


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper."""
    return model.module if hasattr(model, "module") else model


def save_training_state(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "extra": extra or {},
    }
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    return path


def load_training_state(
    directory: Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} has no {STATE_FILE}")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_model_weights(model: nn.Module, path: Path) -> Path:
    from safetensors.torch import save_model

    save_model(unwrap(model), str(path))
    return path


def load_model_weights(model: nn.Module, path: Path) -> nn.Module:
    from safetensors.torch import load_model

    load_model(model, str(path))
    return model
