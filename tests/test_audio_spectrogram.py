"""Spectrogram augmentations: RandomErasing, SpecAugment, test-time augmentation."""

from __future__ import annotations

import random

import pytest
import torch

from audiosweep.audio import RandomErasing, SpecAugment


def _erased_boxes(out: torch.Tensor) -> list[tuple[int, int] | None]:
    """Per sample: (height, width) of the zero block in an all-ones input, or None."""
    boxes = []
    for sample in out[:, 0]:
        zero = sample == 0
        if not bool(zero.any()):
            boxes.append(None)
            continue
        rows = zero.any(dim=1).nonzero().flatten()
        cols = zero.any(dim=0).nonzero().flatten()
        h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(zero.sum()) == h * w, "erased region is not one rectangle"
        boxes.append((h, w))
    return boxes


def test_random_erasing_p1_erases_one_rectangle_of_bounded_area_per_sample():
    random.seed(0)
    spec = torch.ones(64, 1, 60, 100)
    out = RandomErasing(p=1.0)(spec)
    assert torch.equal(spec, torch.ones_like(spec)), "inplace=False must not touch the input"
    boxes = _erased_boxes(out)
    assert all(b is not None for b in boxes)
    for h, w in boxes:
        frac = h * w / (60 * 100)
        assert 0.015 < frac < 0.36  # [0.02, 1/3] up to rounding of h and w
        assert 0.3 / 1.5 < h / w < 1.5 / 0.3
    assert len(set(boxes)) > 20  # drawn per sample


def test_random_erasing_probability_and_modes():
    random.seed(1)
    out = RandomErasing(p=0.25)(torch.ones(1200, 1, 32, 40))
    erased = sum(b is not None for b in _erased_boxes(out)) / 1200
    assert abs(erased - 0.25) < 0.04
    spec = torch.ones(4, 1, 32, 40)
    assert torch.equal(RandomErasing(p=0.0)(spec), spec)
    inplace = torch.ones(4, 1, 32, 40)
    assert RandomErasing(p=1.0, inplace=True)(inplace) is inplace
    assert bool((inplace == 0).any())
    noisy = RandomErasing(p=1.0, mode="pixel")(torch.full((4, 1, 32, 40), 5.0))
    assert bool((noisy != 5.0).any()) and bool((noisy < 5.0).any())
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(mode="blur")
    with pytest.raises(ValueError, match=r"\(B, C, F, T\)"):
        RandomErasing()(torch.ones(1, 32, 40))


def test_specaugment_masks_are_bounded_zero_bands_drawn_per_sample():
    torch.manual_seed(0)
    spec = torch.ones(200, 1, 64, 300)
    aug = SpecAugment(n_time_masks=2, time_mask_param=40, n_freq_masks=2, freq_mask_param=10)
    out = aug(spec)
    assert out.shape == spec.shape
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    time_masked = (out[:, 0] == 0).all(dim=1).sum(dim=1)  # fully zero frames
    freq_masked = (out[:, 0] == 0).all(dim=2).sum(dim=1)  # fully zero mel bins
    assert int(time_masked.max()) <= 2 * 39 and int(freq_masked.max()) <= 2 * 9
    # A cell is zero only if its frame or its bin is masked.
    zero = out[:, 0] == 0
    covered = (out[:, 0] == 0).all(dim=1, keepdim=True) | (out[:, 0] == 0).all(dim=2, keepdim=True)
    assert torch.equal(zero, covered & zero) and torch.equal(zero | covered, covered)
    assert len(set(time_masked.tolist())) > 10 and int(time_masked.max()) > 40
    none = SpecAugment(n_time_masks=0, n_freq_masks=0)(spec)
    assert torch.equal(none, spec)
