"""Mixup with label smoothing on multi-hot targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from audiosweep.train.mixup import MixupWithSmoothing


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 6, c: int = 5):
    # Input i is the constant i + 1, so each mixed input reveals lam and its partner.
    x = (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, 1, 4, 7).clone()
    y = (torch.rand(b, c, generator=_gen(99)) < 0.4).float()
    return x, y


def test_smoothing_only_when_not_mixed():
    x, y = _batch()
    out_x, out_y = MixupWithSmoothing(alpha=0.8, smoothing=0.1, p=0.0)(x, y)
    assert torch.equal(out_x, x)
    c = y.shape[1]
    torch.testing.assert_close(out_y, y * 0.9 + 0.1 / c)
    # Positives become 1 - eps + eps/C, negatives eps/C (timm's one-hot smoothing values).
    assert sorted(out_y.unique().tolist()) == pytest.approx([0.02, 0.92])


def test_inputs_and_smoothed_targets_mixed_with_one_lambda_and_flipped_partner():
    x, y = _batch()
    mixup = MixupWithSmoothing(alpha=0.8, smoothing=0.1, generator=_gen(0))
    out_x, out_y = mixup(x, y)
    b = x.shape[0]
    lam = mixup.last_lam
    assert 0.0 < lam < 1.0
    values = torch.arange(b, dtype=torch.float32) + 1
    expected_x = lam * values + (1 - lam) * values.flip(0)
    torch.testing.assert_close(out_x[:, 0, 0, 0], expected_x)
    assert out_x.shape == x.shape
    smoothed = y * 0.9 + 0.1 / y.shape[1]
    torch.testing.assert_close(out_y, lam * smoothed + (1 - lam) * smoothed.flip(0))
    torch.testing.assert_close(
        out_y.sum(1), lam * smoothed.sum(1) + (1 - lam) * smoothed.flip(0).sum(1)
    )


def test_permutation_pairing_mixes_with_some_other_row():
    x, y = _batch(b=8)
    mixup = MixupWithSmoothing(pairing="permutation", generator=_gen(1))
    out_x, out_y = mixup(x, y)
    lam = mixup.last_lam
    partner = torch.round((out_x[:, 0, 0, 0] - lam * (torch.arange(8) + 1)) / (1 - lam) - 1).long()
    assert sorted(partner.tolist()) == list(range(8))
    smoothed = y * 0.9 + 0.1 / y.shape[1]
    torch.testing.assert_close(out_y, lam * smoothed + (1 - lam) * smoothed[partner])


def test_lambda_follows_beta_alpha_alpha():
    x, y = _batch()
    mixup = MixupWithSmoothing(alpha=0.8, generator=_gen(2))
    lams = []
    for _ in range(1500):
        mixup(x, y)
        lams.append(mixup.last_lam)
    assert stats.kstest(np.array(lams), stats.beta(0.8, 0.8).cdf).pvalue > 0.01


def test_probability_of_mixing_and_seed_reproducibility():
    x, y = _batch()
    mixup = MixupWithSmoothing(p=0.5, generator=_gen(3))
    mixed = 0
    for _ in range(1000):
        out_x, _ = mixup(x, y)
        mixed += not torch.equal(out_x, x)
    assert abs(mixed / 1000 - 0.5) < 0.06
    a = MixupWithSmoothing(generator=_gen(4))(x, y)
    b = MixupWithSmoothing()(x, y, generator=_gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_class_index_targets_and_errors():
    x, _ = _batch(b=4)
    out_x, out_y = MixupWithSmoothing(p=0.0, smoothing=0.0, num_classes=3)(
        x, torch.tensor([0, 2, 1, 2])
    )
    assert torch.equal(out_y, torch.eye(3)[[0, 2, 1, 2]])
    with pytest.raises(ValueError, match="num_classes"):
        MixupWithSmoothing()(x, torch.tensor([0, 2, 1, 2]))
    with pytest.raises(ValueError, match="B = 4"):
        MixupWithSmoothing()(x, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="pairing"):
        MixupWithSmoothing(pairing="shuffle")
