"""The audio stem shared by the paper's three backbones.

A (2, 16) patch convolution with stride (2, 16) turns a 1-channel (128, 1001) log-mel into a
(64, 62) map, replacing each vision model's RGB stem (paper, section 3.1).
"""

from __future__ import annotations

from timm.layers import trunc_normal_
from torch import nn

STEM_KERNEL = (2, 16)


def audio_patch_stem(out_channels: int, *, bias: bool, in_channels: int = 1) -> nn.Conv2d:
    """Conv2d(in_channels, out_channels, (2, 16), stride=(2, 16)), weight trunc-normal(0.02), bias 0."""
    stem = nn.Conv2d(in_channels, out_channels, STEM_KERNEL, stride=STEM_KERNEL, bias=bias)
    trunc_normal_(stem.weight, std=0.02)
    if stem.bias is not None:
        nn.init.zeros_(stem.bias)
    return stem
