"""Models built from a trial config, the same way wherever a trial's model is built."""

from __future__ import annotations

from typing import Any

from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.models.factory import create_model, get_arch


def model_kwargs(cfg: TrialConfig) -> dict[str, Any]:
    """Keyword arguments of `create_model` for ``cfg.model`` (the arch aside).

    Only options an architecture has are passed: ``model.drop_path_rate`` goes to the timm
    backbones, not to SP4ASC, which has no drop path; SP4ASC's mel batch norm is sized by
    ``audio.n_mels``.
    """
    model = cfg.model
    spec = get_arch(model.arch)
    kwargs: dict[str, Any] = {
        "conv": model.conv,
        "dilated_kernel_size": model.dilated_kernel_size,
        "kernel_count": model.kernel_count,
        "dcls_impl": model.dcls_impl,
        **model.options,
    }
    if spec.drop_path:
        kwargs["drop_path_rate"] = model.drop_path_rate
    if spec.takes_n_mels:
        given = model.options.get("n_mels", cfg.audio.n_mels)
        if given != cfg.audio.n_mels:
            raise ValueError(
                f"model.options.n_mels={given} but audio.n_mels={cfg.audio.n_mels}: "
                f"{model.arch} takes its mel bins from the front end, drop model.options.n_mels"
            )
        kwargs["n_mels"] = cfg.audio.n_mels
    return kwargs


def create_model_from_config(cfg: TrialConfig, num_classes: int) -> nn.Module:
    """``create_model(cfg.model.arch, ...)`` with the trial's model options, freshly initialised
    (``model.init`` is applied separately, by `models.pretrained.initialise_model`)."""
    return create_model(cfg.model.arch, num_classes=num_classes, **model_kwargs(cfg))


def num_classes_of(cfg: TrialConfig, weights: dict[str, Any]) -> int | None:
    """The classes of a state dict of ``cfg``'s model: the rows of the tensor whose first
    dimension follows ``num_classes`` (found by building the model for one class, shapes only).
    None if the state dict has no such tensor."""
    import torch

    with torch.device("meta"):
        one = create_model_from_config(cfg, 1).state_dict()
    for key, value in one.items():
        given = weights.get(key)
        if given is not None and given.shape != value.shape and value.shape[:1] == (1,):
            return int(given.shape[0])
    return None
