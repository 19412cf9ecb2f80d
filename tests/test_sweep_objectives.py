"""The throughput objective: models timed in turns within each repeat, and the ratio to DSC
taken on the config's model without disturbing the caller's random streams."""

from __future__ import annotations

import math

import torch
from torch import nn

from audiosweep.config import load_preset
from audiosweep.sweep.objectives import THROUGHPUT_RATIO, throughput_vs_dsc
from audiosweep.train.side_by_side import Timed, time_interleaved


class Recorder(nn.Module):
    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, x.is_contiguous(memory_format=torch.channels_last)))
        return x.sum(dim=(1, 2, 3))


def test_models_take_turns_in_every_repeat_after_their_warm_up() -> None:
    log: list = []
    entries = [Timed(n, Recorder(n, log), n == "b", modes=("inference",)) for n in "abc"]
    x = torch.randn(2, 3, 4, 5)  # 3 channels: the two memory formats differ
    time_interleaved(entries, modes=("inference",), x=x, target=torch.zeros(2, 1), repeats=3)
    names = [n for n, _ in log]
    # One warm-up each, then rounds in turn, every other one reversed.
    assert names == ["a", "b", "c"] + ["a", "b", "c"] + ["c", "b", "a"] + ["a", "b", "c"]
    assert {n: cl for n, cl in log} == {"a": False, "b": True, "c": False}
    assert all(len(e.seconds["inference"]) == 3 for e in entries)
    assert all(min(e.seconds["inference"]) >= 0 for e in entries)
    assert not any(e.model.training for e in entries)  # timed in eval mode


def test_ratio_to_dsc_of_a_dcls_config_leaves_the_random_streams_alone() -> None:
    cfg = load_preset(
        "smoke",
        [
            "model.conv=dcls_gauss",
            "model.dilated_kernel_size=11",
            "bench.frames=256",
            "bench.batch=1",
        ],
    )
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    out = throughput_vs_dsc(cfg, num_classes=10)
    assert torch.equal(torch.rand(3), expected)
    assert set(out) == {
        THROUGHPUT_RATIO,
        "objective_infer_samples_per_s",
        "objective_dsc_infer_samples_per_s",
    }
    assert all(math.isfinite(v) and v > 0 for v in out.values())
