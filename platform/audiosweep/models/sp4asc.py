"""SP4ASC: the separable CNN6 of Puy, Jain and Bursuc (DCASE 2021 task 1a), with DCLS variants.

Input is a log-mel batch (B, 1, n_mels, frames); the report writes its feature maps as
C x T x F, here they are C x F x T. Every 5x5 convolution of CNN6 becomes

    y = h_time(g(x)) + h_freq(g(x))

with g a 1x1 convolution and h_time / h_freq channel-wise 3-tap convolutions dilated by 2 along
time and frequency (no biases). For `conv="dcls_gauss"` / `"dcls_bilinear"` the two channel-wise
convolutions are `dcls_substitution.AxisDcls1d` layers (dcls's `Dcls1d`) with learnable tap
positions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audiosweep.models.registry import register_model

CHANNELS = (64, 128, 128, 128)
DCLS_VERSIONS = {"dcls_gauss": "gauss", "dcls_bilinear": "v1"}
CONV_TYPES = ("dsc", *DCLS_VERSIONS)
# Four 2x2 average poolings: each axis must keep at least one bin after the last one.
MIN_INPUT_SIZE = 2 ** len(CHANNELS)


class MelBatchNorm(nn.Module):
    """Batch normalisation of each mel bin (statistics over batch and time)."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(n_mels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.squeeze(1)).unsqueeze(1)


class MelAffine(nn.Module):
    """Per-mel-bin scale and shift: the inference form of `MelBatchNorm`."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_mels))
        self.bias = nn.Parameter(torch.zeros(n_mels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None] + self.bias[:, None]


def _channelwise(
    channels: int, axis: int, conv: str, dilated_kernel_size: int, kernel_count: int
) -> nn.Module:
    if conv == "dsc":
        along_time = axis == -1
        return nn.Conv2d(
            channels,
            channels,
            kernel_size=(1, 3) if along_time else (3, 1),
            padding=(0, 2) if along_time else (2, 0),
            dilation=(1, 2) if along_time else (2, 1),
            groups=channels,
            bias=False,
        )
    # Imported here: the DSC model (and a baked DCLS one) is built without `dcls`.
    from audiosweep.models.dcls_substitution import AxisDcls1d

    return AxisDcls1d(channels, axis, dilated_kernel_size, kernel_count, DCLS_VERSIONS[conv])


class SeparableConv2d(nn.Module):
    """1x1 convolution, then the sum of channel-wise convolutions along time and frequency.

    `bias` is None during training (BatchNorm follows); batch-norm folding sets it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv: str = "dsc",
        dilated_kernel_size: int = 7,
        kernel_count: int = 3,
    ) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.time = _channelwise(out_channels, -1, conv, dilated_kernel_size, kernel_count)
        self.freq = _channelwise(out_channels, -2, conv, dilated_kernel_size, kernel_count)
        self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(x)
        y = self.time(x) + self.freq(x)
        if self.bias is not None:
            y = y + self.bias[:, None, None]
        return y


class ConvBlock(nn.Module):
    """Conv-BN-ReLU-Pool: separable convolution, BatchNorm, ReLU, 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options: Any) -> None:
        super().__init__()
        self.conv = SeparableConv2d(in_channels, out_channels, **conv_options)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class SP4ASC(nn.Module):
    """BN-mel, four Conv-BN-ReLU-Pool blocks, frequency-mean / time-(mean+max) pooling, MLP."""

    def __init__(
        self,
        num_classes: int = 10,
        conv: str = "dsc",
        n_mels: int = 256,
        dilated_kernel_size: int = 7,
        kernel_count: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if conv not in CONV_TYPES:
            raise ValueError(f"sp4asc: conv must be one of {CONV_TYPES}, got {conv!r}")
        if conv != "dsc" and (dilated_kernel_size < 1 or dilated_kernel_size % 2 == 0):
            raise ValueError(
                f"sp4asc: dilated_kernel_size must be odd and positive (same-length output), "
                f"got {dilated_kernel_size}"
            )
        if conv != "dsc" and kernel_count < 1:
            raise ValueError(f"sp4asc: kernel_count must be positive, got {kernel_count}")
        if n_mels < MIN_INPUT_SIZE:
            raise ValueError(f"sp4asc: n_mels must be at least {MIN_INPUT_SIZE}, got {n_mels}")
        self.config = {
            "num_classes": num_classes,
            "conv": conv,
            "n_mels": n_mels,
            "dilated_kernel_size": dilated_kernel_size,
            "kernel_count": kernel_count,
            "dropout": dropout,
        }
        self.num_classes = num_classes
        self.n_mels = n_mels
        conv_options = {
            "conv": conv,
            "dilated_kernel_size": dilated_kernel_size,
            "kernel_count": kernel_count,
        }
        self.mel_norm: nn.Module = MelBatchNorm(n_mels)
        widths = (1, *CHANNELS)
        self.blocks = nn.Sequential(
            *(
                ConvBlock(cin, cout, **conv_options)
                for cin, cout in zip(widths[:-1], CHANNELS, strict=True)
            )
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(CHANNELS[-1], CHANNELS[-1]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(CHANNELS[-1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels:
            raise ValueError(
                f"sp4asc expects a log-mel batch (B, 1, {self.n_mels}, frames), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[3] < MIN_INPUT_SIZE:
            raise ValueError(
                f"sp4asc needs at least {MIN_INPUT_SIZE} frames, got {x.shape[3]} "
                f"(input {tuple(x.shape)})"
            )
        x = self.blocks(self.mel_norm(x))
        x = x.mean(dim=2)
        x = x.mean(dim=2) + x.amax(dim=2)
        return self.head(x)


@register_model(
    family="sp4asc",
    description="SP4ASC separable CNN6 (DCASE 2021 task 1a)",
    conv_types=CONV_TYPES,
    num_classes=10,
    drop_path=False,
    takes_n_mels=True,
)
def sp4asc(
    *,
    num_classes: int = 10,
    conv: str = "dsc",
    dcls_impl: str | None = None,
    drop_path_rate: float | None = None,
    **options: Any,
) -> SP4ASC:
    """SP4ASC for (B, 1, n_mels, frames) log-mels; options are `SP4ASC`'s (n_mels, the DCLS
    span and count, dropout). The default DCLS span of 7 bins with 3 taps is comparable to the
    3-tap convolution dilated by 2 (span 5). ``dcls_impl`` does not apply: SP4ASC's channel-wise
    DCLS layers are dcls's own Dcls1d."""
    if drop_path_rate is not None:
        raise ValueError("sp4asc has no drop path: drop_path_rate must not be set")
    return SP4ASC(num_classes=num_classes, conv=conv, **options)


def report_parameter_count(model: nn.Module) -> int:
    """Parameters counted as the SP4ASC report counts them.

    The report's training-time figure (64,330) counts four values per BatchNorm channel
    (scale, shift, running mean, running variance); learnable parameters alone are 62,922.
    """
    unique = {id(p): p for p in model.parameters()}
    learnable = sum(p.numel() for p in unique.values())
    statistics = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return learnable + statistics
