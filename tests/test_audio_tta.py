"""Test-time augmentation: the mean of sigmoid/softmax over augmented views, reproducible by seed."""

from __future__ import annotations

import pytest
import torch

from audiosweep.audio import SpecAugment, test_time_augment


def _mean_model(x: torch.Tensor) -> torch.Tensor:  # logits (B, 2): [mean, -mean]
    m = x.mean(dim=(1, 2, 3))
    return torch.stack([m, -m], dim=1)


def test_views_are_averaged_after_the_activation() -> None:
    spec = torch.zeros(3, 1, 4, 5)
    offsets = iter([0.0, 1.0, -2.0, 3.0])
    calls = []

    def augment(x):
        calls.append(1)
        return x + next(offsets)

    probs = test_time_augment(_mean_model, spec, 4, augment=augment, activation="sigmoid")
    assert len(calls) == 4
    expected = torch.stack(
        [torch.sigmoid(torch.tensor([c, -c])) for c in (0.0, 1.0, -2.0, 3.0)]
    ).mean(dim=0)
    torch.testing.assert_close(probs, expected.expand(3, 2))

    offsets = iter([0.0, 1.0])
    soft = test_time_augment(_mean_model, spec, 2, augment=augment, activation="softmax")
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(3))
    expected = (
        torch.softmax(torch.tensor([0.0, 0.0]), 0) + torch.softmax(torch.tensor([1.0, -1.0]), 0)
    ) / 2
    torch.testing.assert_close(soft[0], expected)


def test_no_views_is_the_plain_prediction() -> None:
    spec = torch.randn(2, 1, 8, 9)
    plain = test_time_augment(_mean_model, spec, 0, augment=SpecAugment(), activation="softmax")
    torch.testing.assert_close(plain, torch.softmax(_mean_model(spec), dim=1))
    same = test_time_augment(_mean_model, spec, 5, augment=None, activation="softmax")
    torch.testing.assert_close(same, plain)
    with pytest.raises(ValueError, match="activation"):
        test_time_augment(_mean_model, spec, 2, augment=SpecAugment(), activation="relu")
    with pytest.raises(ValueError, match="views"):
        test_time_augment(_mean_model, spec, -1)


def test_a_seed_repeats_the_draws_and_leaves_the_global_rng_alone() -> None:
    spec = torch.randn(4, 1, 16, 40)
    augment = SpecAugment(n_time_masks=2, time_mask_param=20, n_freq_masks=2, freq_mask_param=8)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = test_time_augment(_mean_model, spec, 30, augment=augment, seed=7)
    assert torch.equal(torch.rand(3), before)  # the global stream did not move
    b = test_time_augment(_mean_model, spec, 30, augment=augment, seed=7)
    c = test_time_augment(_mean_model, spec, 30, augment=augment, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # The same 30 masks drawn by hand from the same seed give the same mean.
    torch.manual_seed(7)
    by_hand = torch.stack([torch.softmax(_mean_model(augment(spec)), 1) for _ in range(30)])
    torch.testing.assert_close(a, by_hand.mean(0))
