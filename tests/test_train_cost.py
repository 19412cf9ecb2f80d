"""Per-trial cost figures against closed-form counts: MACs per clip, live tensor memory."""

from __future__ import annotations

import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.train.cost import (
    clip_shape,
    cost_figures,
    live_storage,
    macs_per_clip,
    train_step_peak_bytes,
)


def test_macs_per_clip_counts_each_conv_and_linear_multiply_accumulate_once() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),  # 4 out x (8 x 10) positions x 9 taps
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 10, 5),  # 320 inputs x 5 outputs
    )
    assert macs_per_clip(model, (1, 8, 10)) == 4 * 8 * 10 * 9 + 320 * 5
    assert model.training  # left as it was


def test_live_storage_peaks_at_the_most_bytes_alive_at_once() -> None:
    with live_storage() as tracker:
        a = torch.empty(1000)  # 4,000 bytes
        b = torch.empty(2000, dtype=torch.float64)  # 16,000
        del a
        c = torch.empty(500)  # 2,000
        view = b[:10]  # a view allocates nothing
    assert tracker.peak == 20_000
    assert tracker.live == 18_000
    del b, c, view


class MatMul(nn.Module):
    """x @ W: autograd's gradient of W comes out contiguous, and becomes ``.grad`` as it is."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_train_step_peak_holds_the_model_its_gradients_and_little_else() -> None:
    # A 1000 x 1000 weight on a batch of 2: the step's own tensors (logits, loss terms, their
    # gradients) are a few KB beside the 4 MB weight and its 4 MB gradient.
    model = MatMul(1000)
    weight = 1000 * 1000 * 4
    inputs = 2 * 1000 * 4 + 2 * 1000 * 4  # the batch and its targets
    peak = train_step_peak_bytes(model, batch=2, clip_shape=(1000,), num_classes=1000)
    assert 2 * weight + inputs <= peak <= 2 * weight + inputs + 100_000
    assert model.weight.grad is None  # measured on a copy


def test_cost_figures_at_the_presets_clip_shape() -> None:
    cfg = TrialConfig().with_overrides(
        {"data.clip_seconds": 2.0, "audio.n_mels": 8, "audio.hop_length": 640}
    )
    assert clip_shape(cfg) == (1, 8, 2 * 32000 // 640 + 1)
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.Flatten(), nn.Linear(2 * 8 * 101, 3))
    figures = cost_figures(model, batch=2, clip_shape=clip_shape(cfg), num_classes=3)
    assert figures["macs_per_clip"] == 2 * 8 * 101 + 2 * 8 * 101 * 3
    assert figures["train_step_peak_bytes"] > 0 and figures["cost_clip_shape"] == "1x8x101"
