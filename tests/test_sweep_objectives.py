"""The throughput objective: models timed in turns within each repeat, and the ratio to DSC
taken on the config's model without disturbing the caller's random streams."""

from __future__ import annotations

import math

import torch
from torch import nn

from audiosweep.bench.dcls import time_interleaved
from audiosweep.config import load_preset
from audiosweep.sweep.objectives import THROUGHPUT_RATIO, throughput_vs_dsc


class Recorder(nn.Module):
    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, x.is_contiguous(memory_format=torch.channels_last)))
        return x.sum(dim=(1, 2, 3))


def test_models_take_turns_in_every_repeat_after_their_warm_up() -> None:
    log: list = []
    models = {n: Recorder(n, log) for n in ("a", "b", "c")}
    x = torch.randn(2, 3, 4, 5)  # 3 channels: the two memory formats differ
    seconds = time_interleaved(models, x, repeats=3, channels_last=frozenset({"b"}))
    names = [n for n, _ in log]
    assert names == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3
    assert {n: cl for n, cl in log} == {"a": False, "b": True, "c": False}
    assert all(len(s) == 3 and min(s) >= 0 for s in seconds.values())
    assert not any(m.training for m in models.values())  # timed in eval mode


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
