"""``create_model(arch, conv=...)`` in the manner of ``timm.create_model``.

Every model takes a (B, 1, n_mels, frames) log-mel batch and returns (B, num_classes) logits.
Importing this module imports every model module, which registers its architectures.
"""

from __future__ import annotations

from torch import nn

from audiosweep.models import backbones, sp4asc  # noqa: F401  (each registers its archs)
from audiosweep.models.registry import ArchSpec, registered_names, registered_spec


def list_archs(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a shell-style pattern, sorted."""
    return registered_names(pattern)


def get_arch(name: str) -> ArchSpec:
    return registered_spec(name)


def create_model(
    arch: str, conv: str = "dsc", num_classes: int | None = None, **kwargs
) -> nn.Module:
    """Build `arch` with its depthwise convolutions as `conv` (one of the arch's conv types).

    Keyword arguments that are None are dropped, so they take the architecture's default (as in
    timm): for the timm backbones 527 classes and the paper's DCLS setting and drop path (the
    defaults of `audiosweep.config.ModelConfig`); for sp4asc 10 classes and its own DCLS span.
    ``dcls_impl``: "fast" (`FastDcls2d`) or "reference" (`dcls`'s `Dcls2d`), same parameters.
    Other options go to the underlying model constructor (e.g. ``drop_rate``).
    """
    spec = get_arch(arch)
    if conv not in spec.conv_types:
        raise ValueError(f"{arch}: conv must be one of {spec.conv_types}, got {conv!r}")
    options = {key: value for key, value in kwargs.items() if value is not None}
    model = spec.build(
        num_classes=spec.num_classes if num_classes is None else num_classes, conv=conv, **options
    )
    # Read back by `models.pretrained` to pick the checkpoint of the case.
    model.audiosweep_arch = {"arch": arch, "conv": conv}
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())
