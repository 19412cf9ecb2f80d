"""Exponential moving average of a model's weights (timm's ModelEmaV3), updated per optimizer step.

After each step every floating-point tensor of the state dict (parameters and buffers) moves
``ema <- decay * ema + (1 - decay) * weight``; integer buffers are copied. The decay is
constant (no warm-up), as in the reference recipe's timm EMA.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from timm.utils import ModelEmaV3
from torch import Tensor, nn

EMA_STATE_KEY = "ema"  # the EMA weights in a training checkpoint's `extra`


class WeightEma(ModelEmaV3):
    """ModelEmaV3 that updates a tensor shared by several modules once per step.

    DCLS layers of a stage share one positions tensor, which a state dict lists once per
    layer; timm's update walks the state dict and would move such a tensor several times per
    step (an effective decay of decay**k).
    """

    @torch.no_grad()
    def apply_update_(self, model: nn.Module, decay: float) -> None:
        ema_values, model_values = [], []
        for ema_v, model_v in _unique_pairs(self.module.state_dict(), model.state_dict()):
            if ema_v.is_floating_point():
                ema_values.append(ema_v)
                model_values.append(model_v.to(device=ema_v.device))
            else:
                ema_v.copy_(model_v)
        if self.foreach:
            self._foreach_lerp_(ema_values, model_values, weight=1.0 - decay)
        else:
            for ema_v, model_v in zip(ema_values, model_values, strict=True):
                self._lerp_(ema_v, model_v, weight=1.0 - decay)


def _unique_pairs(ema: Mapping[str, Tensor], model: Mapping[str, Tensor]) -> list[tuple]:
    if list(ema) != list(model):
        raise ValueError("the EMA model and the model have different state dict keys")
    seen: set[tuple[int, int]] = set()
    pairs = []
    for key, ema_v in ema.items():
        # One storage (and offset) = one tensor, however many modules hold it.
        identity = (ema_v.untyped_storage().data_ptr(), ema_v.storage_offset())
        if identity in seen:
            continue
        seen.add(identity)
        pairs.append((ema_v, model[key]))
    return pairs


def create_ema(
    model: nn.Module, decay: float | None, state: Mapping[str, Tensor] | None = None
) -> WeightEma | None:
    """The EMA of `model` (the bare model, not a DDP wrapper), or None when `decay` is None.

    `state`: the EMA weights of a checkpoint to continue from; without it the average starts
    at the model's current weights.
    """
    if decay is None:
        return None
    ema = WeightEma(model, decay=decay)
    if state is not None:
        ema.module.load_state_dict(state)
    return ema
