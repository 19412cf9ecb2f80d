"""Architecture table in the manner of timm's ``_registry``: model modules register their
builders with `register_model`; `models.factory` imports every model module and builds by name.

This module imports no model code, so any model module can import it without a cycle.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str
    build: Callable[..., nn.Module]
    conv_types: tuple[str, ...]
    num_classes: int
    description: str
    # How a trial config applies: drop path exists only in the timm backbones; a model built
    # for a fixed number of mel bins takes ``n_mels`` from the audio front end.
    drop_path: bool = True
    takes_n_mels: bool = False


_ARCHS: dict[str, ArchSpec] = {}

# The depthwise-convolution cases every backbone builds: the names here need no `dcls` import,
# so a DSC model (or a baked DCLS one) is built without the package. conv name -> dcls `version`.
DCLS_VERSIONS = {"dcls_gauss": "gauss", "dcls_bilinear": "v1", "dcls_triangle": "max"}
CONV_TYPES = ("dsc", *DCLS_VERSIONS)


def dcls_version(conv: str) -> str:
    if conv not in DCLS_VERSIONS:
        raise ValueError(f"conv must be one of {tuple(DCLS_VERSIONS)} for DCLS, got {conv!r}")
    return DCLS_VERSIONS[conv]


def register_model(
    *,
    family: str,
    description: str,
    conv_types: tuple[str, ...],
    num_classes: int,
    drop_path: bool = True,
    takes_n_mels: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(*, num_classes, conv, **options) -> nn.Module`` under ``fn.__name__``."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHS[name] = ArchSpec(
            name, family, fn, tuple(conv_types), num_classes, description, drop_path, takes_n_mels
        )
        return fn

    return decorator


def registered_names(pattern: str = "*") -> list[str]:
    """Names registered so far that match a shell-style pattern, sorted."""
    return sorted(name for name in _ARCHS if fnmatch.fnmatch(name, pattern))


def registered_spec(name: str) -> ArchSpec:
    if name not in _ARCHS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHS))}")
    return _ARCHS[name]
