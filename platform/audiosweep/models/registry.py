"""Architecture registry: ``create_model(arch, conv=...)`` in the manner of ``timm.create_model``.

Every model takes a (B, 1, n_mels, frames) log-mel batch and returns (B, num_classes) logits.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from audiosweep.models.dcls_substitution import CONV_TYPES, dcls_version, replace_depthwise_dcls

# The paper's setting (Table 1): DCLS-Gauss, 23x23 dilated kernel, 26 elements; drop path 0.4.
DILATED_KERNEL_SIZE = 23
KERNEL_COUNT = 26
DROP_PATH_RATE = 0.4
AUDIOSET_CLASSES = 527


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


def _default(value, default):
    return default if value is None else value


def register_backbone(
    name: str, *, family: str, description: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(num_classes, drop_path_rate, **options) -> DSC model`` under `name`.

    The DCLS cases are the same model after `replace_depthwise_dcls`.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        def build(
            *,
            num_classes: int,
            conv: str,
            dilated_kernel_size: int | None,
            kernel_count: int | None,
            drop_path_rate: float | None,
            dcls_impl: str,
            **options,
        ) -> nn.Module:
            model = fn(
                num_classes=num_classes,
                drop_path_rate=_default(drop_path_rate, DROP_PATH_RATE),
                **options,
            )
            if conv != "dsc":
                replace_depthwise_dcls(
                    model,
                    dcls_version(conv),
                    dilated_kernel_size=_default(dilated_kernel_size, DILATED_KERNEL_SIZE),
                    kernel_count=_default(kernel_count, KERNEL_COUNT),
                    impl=dcls_impl,
                )
            return model

        _register(ArchSpec(name, family, build, CONV_TYPES, AUDIOSET_CLASSES, description))
        return fn

    return decorator


def _register(spec: ArchSpec) -> None:
    if spec.name in _ARCHS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _ARCHS[spec.name] = spec


def _build_sp4asc(
    *,
    num_classes: int,
    conv: str,
    dilated_kernel_size: int | None,
    kernel_count: int | None,
    drop_path_rate: float | None,
    dcls_impl: str,
    **options,
) -> nn.Module:
    from audiosweep.models.sp4asc import build_sp4asc

    if drop_path_rate is not None:
        raise ValueError("sp4asc has no drop path: drop_path_rate must not be set")
    for key, value in (
        ("dilated_kernel_size", dilated_kernel_size),
        ("kernel_count", kernel_count),
    ):
        if value is not None:
            options[key] = value
    # dcls_impl does not apply: SP4ASC's channel-wise DCLS layers are dcls's own Dcls1d.
    return build_sp4asc(num_classes=num_classes, conv=conv, **options)


_register(
    ArchSpec(
        "sp4asc",
        "sp4asc",
        _build_sp4asc,
        ("dsc", "dcls_gauss", "dcls_bilinear"),
        10,
        "SP4ASC separable CNN6 (DCASE 2021 task 1a)",
        drop_path=False,
        takes_n_mels=True,
    )
)


def _ensure_backbones() -> None:
    import audiosweep.models.backbones  # noqa: F401  (registers the timm backbones)


def list_archs(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a shell-style pattern, sorted."""
    _ensure_backbones()
    return sorted(name for name in _ARCHS if fnmatch.fnmatch(name, pattern))


def get_arch(name: str) -> ArchSpec:
    _ensure_backbones()
    if name not in _ARCHS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHS))}")
    return _ARCHS[name]


def create_model(
    arch: str,
    conv: str = "dsc",
    num_classes: int | None = None,
    *,
    dilated_kernel_size: int | None = None,
    kernel_count: int | None = None,
    drop_path_rate: float | None = None,
    dcls_impl: str = "fast",
    **options,
) -> nn.Module:
    """Build `arch` with its depthwise convolutions as `conv` (one of the arch's conv types).

    None means the architecture's default: for the timm backbones 527 classes, a 23x23 dilated
    kernel with 26 elements and drop path 0.4; for sp4asc 10 classes and its own DCLS defaults.
    dcls_impl: "fast" (`FastDcls2d`) or "reference" (`dcls`'s `Dcls2d`), same parameters.
    Other options go to the underlying model constructor (e.g. ``drop_rate``).
    """
    spec = get_arch(arch)
    if conv not in spec.conv_types:
        raise ValueError(f"{arch}: conv must be one of {spec.conv_types}, got {conv!r}")
    model = spec.build(
        num_classes=spec.num_classes if num_classes is None else num_classes,
        conv=conv,
        dilated_kernel_size=dilated_kernel_size,
        kernel_count=kernel_count,
        drop_path_rate=drop_path_rate,
        dcls_impl=dcls_impl,
        **options,
    )
    model.audiosweep_arch = {"arch": arch, "conv": conv}
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())
