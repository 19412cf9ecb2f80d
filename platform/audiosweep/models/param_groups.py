"""Optimizer parameter groups: DCLS positions/sigmas, no-decay tensors, the rest."""

from __future__ import annotations

from torch import nn

from audiosweep.models.dcls_substitution import position_parameter_ids


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    position_lr_scale: float = 5.0,
) -> list[dict]:
    """Groups named "dcls_positions", "no_decay" and "decay" (empty ones left out).

    DCLS positions and sigmas: no weight decay, lr x position_lr_scale. 1-d tensors (norms,
    layer scale, biases) and names in the model's ``no_weight_decay()``: no decay. The rest:
    `weight_decay`. Frozen parameters are skipped; shared tensors appear once.
    """
    if lr <= 0 or weight_decay < 0 or position_lr_scale <= 0:
        raise ValueError(
            f"param_groups: need lr > 0, weight_decay >= 0, position_lr_scale > 0; got "
            f"lr={lr}, weight_decay={weight_decay}, position_lr_scale={position_lr_scale}"
        )
    positions = position_parameter_ids(model)
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups = {
        "dcls_positions": {"lr": lr * position_lr_scale, "weight_decay": 0.0, "params": []},
        "no_decay": {"lr": lr, "weight_decay": 0.0, "params": []},
        "decay": {"lr": lr, "weight_decay": weight_decay, "params": []},
    }
    for name, param in model.named_parameters():  # yields each shared tensor once
        if not param.requires_grad:
            continue
        if id(param) in positions:
            key = "dcls_positions"
        elif param.ndim <= 1 or name.endswith(".bias") or name in skip:
            key = "no_decay"
        else:
            key = "decay"
        groups[key]["params"].append(param)
    return [{"name": key, **group} for key, group in groups.items() if group["params"]]
