"""Warm-up + cosine schedule: closed-form values, per-group scaling, checkpointing."""

from __future__ import annotations

import math

import pytest
import torch

from audiosweep.train.schedule import scaled_lr, warmup_cosine

BASE, MIN_LR, TOTAL, WARMUP = 4e-3, 1e-6, 60, 20


def _optimizer() -> torch.optim.Optimizer:
    weights, positions = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.AdamW(
        [{"params": [weights]}, {"params": [positions], "lr": 5 * BASE, "weight_decay": 0.0}],
        lr=BASE,
        betas=(0.9, 0.999),
        weight_decay=0.05,
    )


def _lrs_per_update(scheduler, optimizer, steps):
    """lr of every group for each update t = 0..steps-1 (step() after each update)."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


def test_values_at_warmup_start_warmup_end_and_last_step():
    opt = _optimizer()
    sched = warmup_cosine(opt, total_steps=TOTAL, warmup_steps=WARMUP, min_lr=MIN_LR)
    lrs = _lrs_per_update(sched, opt, TOTAL)
    for group, scale in ((0, 1.0), (1, 5.0)):
        assert lrs[0][group] == pytest.approx(scale * BASE / WARMUP)  # first update
        assert lrs[WARMUP // 2 - 1][group] == pytest.approx(scale * BASE * (WARMUP // 2) / WARMUP)
        assert lrs[WARMUP - 1][group] == pytest.approx(scale * BASE)  # last warm-up update
        assert lrs[TOTAL - 1][group] == pytest.approx(scale * MIN_LR)  # last update
        # Mid-cosine: half-way through the decay the lr is the mean of peak and floor.
        mid = WARMUP + (TOTAL - WARMUP) // 2 - 1
        assert lrs[mid][group] == pytest.approx(scale * (BASE + MIN_LR) / 2)
        s = 31
        progress = (s - WARMUP) / (TOTAL - WARMUP)
        expected = MIN_LR + (BASE - MIN_LR) * 0.5 * (1 + math.cos(math.pi * progress))
        assert lrs[s - 1][group] == pytest.approx(scale * expected)
    decay = [row[0] for row in lrs[WARMUP - 1 :]]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))


def test_state_dict_resumes_the_same_schedule():
    opt = _optimizer()
    sched = warmup_cosine(opt, total_steps=TOTAL, warmup_steps=WARMUP, min_lr=MIN_LR)
    _lrs_per_update(sched, opt, 25)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    rest = _lrs_per_update(sched, opt, TOTAL - 25)

    restored = _optimizer()
    restored_sched = warmup_cosine(restored, total_steps=TOTAL, warmup_steps=WARMUP, min_lr=MIN_LR)
    restored.load_state_dict(opt_state)
    restored_sched.load_state_dict(sched_state)
    resumed = _lrs_per_update(restored_sched, restored, TOTAL - 25)
    assert sum(resumed, []) == pytest.approx(sum(rest, []), rel=1e-12)


def test_stepping_past_the_end_stays_at_the_floor_and_no_warmup_works():
    opt = _optimizer()
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=0, min_lr=MIN_LR)
    lrs = _lrs_per_update(sched, opt, 14)
    assert lrs[0][0] == pytest.approx(MIN_LR + (BASE - MIN_LR) * 0.5 * (1 + math.cos(math.pi / 10)))
    assert [row[0] for row in lrs[9:]] == pytest.approx([MIN_LR] * 5)


def test_explicit_base_lr_sets_the_floor_reference():
    opt = _optimizer()
    sched = warmup_cosine(opt, total_steps=5, warmup_steps=1, min_lr=MIN_LR, base_lr=2 * BASE)
    lrs = _lrs_per_update(sched, opt, 5)
    assert lrs[-1] == pytest.approx([MIN_LR / 2, 5 * MIN_LR / 2])


def test_invalid_schedules_are_rejected():
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(_optimizer(), total_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="min_lr"):
        warmup_cosine(_optimizer(), total_steps=10, warmup_steps=1, min_lr=1.0)


def test_scaled_lr():
    assert scaled_lr(4e-3, 4096) == pytest.approx(4e-3)
    assert scaled_lr(4e-3, 256) == pytest.approx(2.5e-4)
    assert scaled_lr(1e-3, 64, reference=32) == pytest.approx(2e-3)
    with pytest.raises(ValueError):
        scaled_lr(1e-3, 0)
