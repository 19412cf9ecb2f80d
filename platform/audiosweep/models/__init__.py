"""Models: the paper's audio backbones, DSC -> DCLS substitution, SP4ASC.

Names are imported on first use so that importing a sub-module (or the CLI) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_model": "audiosweep.models.factory",
    "list_archs": "audiosweep.models.factory",
    "get_arch": "audiosweep.models.factory",
    "count_parameters": "audiosweep.models.factory",
    "count_dcls_positions": "audiosweep.models.dcls_substitution",
    "dcls_positions": "audiosweep.models.dcls_substitution",
    "clamp_dcls_positions": "audiosweep.models.dcls_substitution",
    "replace_depthwise_dcls": "audiosweep.models.dcls_substitution",
    "CONV_TYPES": "audiosweep.models.registry",
    "param_groups": "audiosweep.models.param_groups",
    "FastDcls2d": "audiosweep.models.dcls_fast",
    "convert_state_dict": "audiosweep.models.convert",
    "initialise_model": "audiosweep.models.pretrained",
    "load_pretrained": "audiosweep.models.pretrained",
    "LoadReport": "audiosweep.models.pretrained",
    "imagenet_checkpoint": "audiosweep.models.checkpoints",
    "create_model_from_config": "audiosweep.models.from_config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'audiosweep.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
