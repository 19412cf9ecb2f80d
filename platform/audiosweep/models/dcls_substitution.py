"""DSC -> DCLS substitution (the paper's Appendix B) and what to read back from DCLS layers.

Every depthwise 7x7 `nn.Conv2d` (groups == in_channels == out_channels) becomes a DCLS layer of
the same channels and stride, padding ``dilated_kernel_size // 2``, weight N(0, 0.02) and bias 0.
As in the paper, the layers met in module order share positions and sigmas until the channel
count grows, which in the backbones here is exactly "per stage".
"""

from __future__ import annotations

import re

import torch
from DCLS.construct.modules import Dcls1d, Dcls2d, _DclsN_Md, _DclsNd
from torch import nn

from audiosweep.models.dcls_fast import (
    SUPPORTED_VERSIONS,
    FastDcls2d,
    SharedInterpolation,
    quiet_dcls_construction,
)

DCLS_IMPLS = ("fast", "reference")
_STAGE = re.compile(r"^(.*?stages\.\d+)(\.|$)")


def is_depthwise_conv(module: nn.Module, kernel_size: tuple[int, int] = (7, 7)) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == module.in_channels == module.out_channels
        and tuple(module.kernel_size) == tuple(kernel_size)
    )


def replace_depthwise_dcls(
    model: nn.Module,
    version: str = "gauss",
    *,
    dilated_kernel_size: int = 23,
    kernel_count: int = 26,
    impl: str = "fast",
    kernel_size: tuple[int, int] = (7, 7),
) -> nn.Module:
    """Replace every depthwise `kernel_size` conv of `model` in place; returns `model`.

    impl="reference" builds `DCLS.construct.modules.Dcls2d` layers, impl="fast" `FastDcls2d`
    ones; both have the same parameters and state dict keys.
    """
    if impl not in DCLS_IMPLS:
        raise ValueError(f"impl must be one of {DCLS_IMPLS}, got {impl!r}")
    versions = SUPPORTED_VERSIONS if impl == "fast" else ("v0", *SUPPORTED_VERSIONS)
    if version not in versions:
        raise ValueError(f"version must be one of {versions} for impl={impl!r}, got {version!r}")
    if dilated_kernel_size < 1 or dilated_kernel_size % 2 == 0:
        raise ValueError(
            f"dilated_kernel_size must be odd and positive (same-size output), got {dilated_kernel_size}"
        )
    if kernel_count < 1:
        raise ValueError(f"kernel_count must be positive, got {kernel_count}")
    targets = [(name, m) for name, m in model.named_modules() if is_depthwise_conv(m, kernel_size)]
    if not targets:
        raise ValueError(
            f"{type(model).__name__} has no depthwise {kernel_size} convolution to replace"
        )
    layer_class = FastDcls2d if impl == "fast" else Dcls2d
    extra = {} if impl == "fast" else {"use_implicit_gemm": False}
    channels, positions, sigmas, shared = 0, None, None, None
    for name, conv in targets:
        with quiet_dcls_construction():
            layer = layer_class(
                conv.in_channels,
                conv.out_channels,
                kernel_count,
                stride=conv.stride,
                padding=dilated_kernel_size // 2,
                dilated_kernel_size=dilated_kernel_size,
                groups=conv.in_channels,
                bias=conv.bias is not None,
                version=version,
                **extra,
            )
        layer.to(device=conv.weight.device, dtype=conv.weight.dtype)
        nn.init.normal_(layer.weight, std=0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
        if conv.in_channels > channels:  # a new stage: its first layer's positions are shared
            channels, positions, sigmas = conv.in_channels, layer.P, layer.SIG
            shared = SharedInterpolation()
        layer.P, layer.SIG = positions, sigmas
        if impl == "fast":
            layer.shared = shared
        layer.train(conv.training)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    return model


def dcls_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every DCLS layer (`dcls` package classes and their subclasses)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (_DclsNd, _DclsN_Md))]


def position_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the first DCLS layer of each shared positions tensor (one per stage)."""
    seen: set[int] = set()
    firsts = []
    for name, layer in dcls_layers(model):
        if id(layer.P) not in seen:
            seen.add(id(layer.P))
            firsts.append((name, layer))
    return firsts


def _position_tensors(model: nn.Module) -> list[torch.Tensor]:
    unique: dict[int, torch.Tensor] = {}
    for _, layer in dcls_layers(model):
        for tensor in (layer.P, layer.SIG):
            if tensor is not None:
                unique.setdefault(id(tensor), tensor)
    return list(unique.values())


def position_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the (unique) positions and sigmas tensors of every DCLS layer."""
    return {id(t) for t in _position_tensors(model)}


def count_dcls_positions(model: nn.Module) -> int:
    """Elements of the unique positions (P) and sigmas (SIG) tensors: shared tensors count once."""
    return sum(t.numel() for t in _position_tensors(model))


class PositionMap(dict):
    """stage name -> positions (axes, channels, kernel_count) on the dilated grid (0 .. size-1).

    For 2-d layers axis 0 is time (the last input axis) and axis 1 is mel, as in dcls.
    `dilated_kernel_size` is the grid size of the first stage.
    """

    dilated_kernel_size: int = 0


def dcls_positions(model: nn.Module) -> PositionMap:
    """Learned kernel-element positions of each stage (one entry per shared positions tensor).

    Stages are named by their module path (e.g. ``stages.2``) when the model has ``stages.N``
    modules, else ``group0``, ``group1``, ... in module order.
    """
    result = PositionMap()
    for name, layer in position_layers(model):
        match = _STAGE.match(name)
        stage = match.group(1) if match else f"group{len(result)}"
        sizes = layer.dilated_kernel_size
        positions = layer.P.detach().float().reshape(layer.P.shape[0], -1, layer.kernel_count)
        offsets = torch.tensor([s // 2 for s in sizes], dtype=positions.dtype)
        result[stage] = positions.cpu() + offsets[:, None, None]
        if len(result) == 1:
            result.dilated_kernel_size = int(sizes[0])
    return result


def spread_positions(model: nn.Module, seed: int = 0) -> nn.Module:
    """Positions drawn uniformly over the whole dilated grid, as they end up after training.

    At initialisation dcls draws positions near the kernel centre, so the Gaussian kernels have
    exact-zero borders that the fast path's eval cache crops away; spread positions give dense
    23x23 kernels and measure the worst case.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in position_layers(model):
            lim = layer.dilated_kernel_size[0] // 2
            draw = torch.rand(layer.P.shape, generator=generator) * 2 - 1
            layer.P.copy_(draw * lim)
    return model


@torch.no_grad()
def clamp_dcls_positions(model: nn.Module) -> None:
    """Clamp every position to its dilated grid (dcls's `clamp_parameters`, once per shared tensor)."""
    for _, layer in position_layers(model):
        layer.clamp_parameters()


class AxisDcls1d(Dcls1d):
    """A channel-wise `Dcls1d` applied along one axis of a (B, C, F, T) map.

    axis=-1 convolves along time, axis=-2 along frequency. Same parameters and state dict as
    the `Dcls1d` it extends.
    """

    def __init__(
        self, channels: int, axis: int, dilated_kernel_size: int, kernel_count: int, version: str
    ) -> None:
        if axis not in (-1, -2):
            raise ValueError(f"axis must be -1 (time) or -2 (frequency), got {axis}")
        super().__init__(
            channels,
            channels,
            kernel_count,
            padding=dilated_kernel_size // 2,
            dilated_kernel_size=dilated_kernel_size,
            groups=channels,
            bias=False,
            version=version,
        )
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        if self.axis == -1:
            rows = x.permute(0, 2, 1, 3).reshape(b * f, c, t)
            return super().forward(rows).reshape(b, f, c, t).permute(0, 2, 1, 3)
        rows = x.permute(0, 3, 1, 2).reshape(b * t, c, f)
        return super().forward(rows).reshape(b, t, c, f).permute(0, 2, 3, 1)
