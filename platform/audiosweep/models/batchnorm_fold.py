"""Batch-norm folding for SP4ASC (report eqs. 3-5).

With running mean mu, variance var, scale gamma and shift beta, eval-mode BatchNorm is
y = s * x + (beta - s * mu) with s = gamma / sqrt(var + eps). The separable block's output is
linear in the weights of its two channel-wise convolutions, so multiplying each output channel's
weights by s and adding a bias (beta - s * mu) reproduces conv + BN. This holds for the DCLS
variants too: a `Dcls1d` kernel is sum_k w_k * interp_k(positions), linear in the weights w_k
(the interpolation is normalised independently of them), so s scales `weight` and leaves the
positions and sigmas as they are. The BN-mel layer becomes a per-mel affine layer.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from audiosweep.models.sp4asc import ConvBlock, MelAffine, MelBatchNorm


def _scale_shift(bn: _BatchNorm, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (s, beta - s * mu) in float64, so folding adds no float32 rounding of its own."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"fold_batchnorm: {where} has no running statistics to fold")
    mean = bn.running_mean.double()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -scale * mean
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def fold_mel_batchnorm(norm: MelBatchNorm, where: str = "mel_norm") -> MelAffine:
    """The per-mel affine layer equal to `norm` in eval mode (2 x n_mels parameters)."""
    scale, shift = _scale_shift(norm.bn, where)
    dtype = norm.bn.running_mean.dtype
    affine = MelAffine(scale.numel()).to(device=norm.bn.running_mean.device, dtype=dtype)
    with torch.no_grad():
        affine.weight.copy_(scale.to(dtype))
        affine.bias.copy_(shift.to(dtype))
    return affine


def fold_conv_block_(block: ConvBlock, where: str = "block") -> None:
    """Merge `block.bn` into `block.conv` in place; `block.bn` becomes an identity."""
    if not isinstance(block.bn, nn.BatchNorm2d):
        raise ValueError(
            f"fold_batchnorm: {where}.bn is {type(block.bn).__name__}, not BatchNorm2d"
        )
    conv = block.conv
    scale, shift = _scale_shift(block.bn, f"{where}.bn")
    with torch.no_grad():
        for branch in (conv.time, conv.freq):
            weight = branch.weight
            per_channel = scale.view(-1, *([1] * (weight.ndim - 1)))
            weight.copy_((weight.double() * per_channel).to(weight.dtype))
        if conv.bias is not None:
            shift = shift + scale * conv.bias.double()
        reference = conv.pointwise.weight
        conv.bias = nn.Parameter(shift.to(device=reference.device, dtype=reference.dtype))
    block.bn = nn.Identity()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of `model` (eval mode) with every BatchNorm merged; `model` is untouched."""
    folded = copy.deepcopy(model)
    for name, module in list(folded.named_modules()):
        if isinstance(module, ConvBlock) and isinstance(module.bn, _BatchNorm):
            fold_conv_block_(module, name)
        elif isinstance(module, MelBatchNorm):
            parent_name, _, attr = name.rpartition(".")
            parent = folded.get_submodule(parent_name) if parent_name else folded
            setattr(parent, attr, fold_mel_batchnorm(module, name))
    leftover = [name for name, m in folded.named_modules() if isinstance(m, _BatchNorm)]
    if leftover:
        raise TypeError(
            f"fold_batchnorm: no convolution to merge into for BatchNorm layers {leftover} "
            f"of {type(model).__name__}"
        )
    return folded.eval()


def is_folded(model: nn.Module) -> bool:
    """True when `model` holds no BatchNorm layer."""
    return not any(isinstance(m, _BatchNorm) for m in model.modules())
