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

from audiosweep.layout import MODEL_EMA_FILE, MODEL_FILE, POSITIONS_FILE, STATE_FILE

__all__ = [
    "MODEL_EMA_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "load_model_weights",
    "load_positions",
    "load_training_state",
    "save_model_weights",
    "save_positions",
    "save_training_state",
    "unwrap",
]


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


def save_positions(
    directory: Path, initial: dict[str, torch.Tensor], final: dict[str, torch.Tensor]
) -> Path | None:
    """The DCLS positions as initialised and as learned, as their own small safetensors file
    (``init/<param>``, ``final/<param>``); nothing for a model without DCLS."""
    if not initial and not final:
        return None
    from safetensors.torch import save_file

    tensors = {f"init/{k}": v.detach().cpu().contiguous() for k, v in initial.items()}
    tensors.update({f"final/{k}": v.detach().cpu().contiguous() for k, v in final.items()})
    path = Path(directory) / POSITIONS_FILE
    save_file(tensors, str(path))
    return path


def load_positions(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(initial, final) positions from `save_positions`' file."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    initial = {k[len("init/") :]: v for k, v in tensors.items() if k.startswith("init/")}
    final = {k[len("final/") :]: v for k, v in tensors.items() if k.startswith("final/")}
    return initial, final
