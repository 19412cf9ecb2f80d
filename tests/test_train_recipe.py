"""The worker's training pipeline as built from a trial config: accumulation, learning rate,
mixed precision, optimiser and steps per epoch."""

from __future__ import annotations

import pytest
import torch
from timm.optim import Lamb
from torch import nn

from audiosweep.config import load_preset
from audiosweep.train.recipe import (
    accumulation_steps,
    build_optimizer,
    build_recipe,
    learning_rate,
    resolve_amp,
)

CPU = torch.device("cpu")


def _cfg(**overrides):
    return load_preset("smoke").with_overrides(overrides)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def test_accumulation_steps_reach_the_effective_batch() -> None:
    cfg = _cfg(**{"train.batch_size": 8, "train.effective_batch": 64})
    assert accumulation_steps(cfg, world=2) == 4
    assert accumulation_steps(_cfg(**{"train.batch_size": 8}), world=2) == 1


def test_effective_batch_that_is_not_a_multiple_is_refused() -> None:
    cfg = _cfg(**{"train.batch_size": 8, "train.effective_batch": 40})
    with pytest.raises(ValueError, match="not a multiple of batch_size × workers = 8 × 2 = 16"):
        accumulation_steps(cfg, world=2)


def test_learning_rate_scales_linearly_with_the_effective_batch_unless_given() -> None:
    cfg = _cfg(
        **{
            "optim.lr": None,
            "optim.base_lr": 4e-3,
            "optim.lr_reference_batch": 4096,
            "train.batch_size": 16,
            "train.effective_batch": 128,
        }
    )
    assert learning_rate(cfg, world=2) == pytest.approx(4e-3 * 128 / 4096)
    assert learning_rate(cfg.with_overrides({"optim.lr": 0.01}), world=2) == 0.01


@pytest.mark.parametrize(
    ("amp", "expected"), [("auto", None), ("none", None), ("bf16", torch.bfloat16)]
)
def test_mixed_precision_on_cpu(amp: str, expected) -> None:
    assert resolve_amp(amp, CPU) is expected


def test_auto_precision_is_fp16_on_cuda_and_fp16_needs_cuda() -> None:
    assert resolve_amp("auto", torch.device("cuda")) is torch.float16
    with pytest.raises(ValueError, match="needs CUDA"):
        resolve_amp("fp16", CPU)


@pytest.mark.parametrize(("name", "cls"), [("adamw", torch.optim.AdamW), ("lamb", Lamb)])
def test_optimiser_choice_and_decay_groups(name: str, cls: type) -> None:
    cfg = _cfg(**{"optim.name": name, "optim.weight_decay": 0.05})
    opt = build_optimizer(cfg, Tiny(), lr=0.1)
    assert isinstance(opt, cls)
    decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decay == {"decay": 0.05, "no_decay": 0.0}
    assert all(g["lr"] == 0.1 for g in opt.param_groups)


def test_steps_per_epoch_drop_the_remainder_and_whole_accumulation_cycles() -> None:
    cfg = _cfg(**{"train.batch_size": 4, "train.effective_batch": 16, "train.epochs": 2})
    pipe = build_recipe(cfg, device=CPU, model=Tiny(), train_rows=58, world=2)
    # 58 rows / 2 workers = 29 each → 7 batches of 4 → 6 (whole cycles of 2 accumulation steps)
    assert pipe.accumulation_steps == 2
    assert pipe.batches_per_epoch == 6


def test_a_split_too_small_for_one_step_is_refused() -> None:
    cfg = _cfg(**{"train.batch_size": 32})
    with pytest.raises(ValueError, match="the train split has 40 rows: too few for 2 workers"):
        build_recipe(cfg, device=CPU, model=Tiny(), train_rows=40, world=2)


def test_train_inputs_keep_batch_and_target_shapes() -> None:
    cfg = _cfg(**{"data.clip_seconds": 2.0})
    pipe = build_recipe(cfg, device=CPU, model=Tiny(), train_rows=400, world=1)
    samples = 2 * cfg.audio.sample_rate
    wave = torch.randn(3, samples)
    target = torch.zeros(3, 10)
    target[:, 0] = 1
    spec, mixed = pipe.inputs.train_inputs(wave, target)
    assert spec.shape[:3] == (3, 1, cfg.audio.n_mels)
    assert mixed.shape == (3, 10)
