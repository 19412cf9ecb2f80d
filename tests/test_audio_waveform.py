"""Waveform augmentations: PadOrTruncate, RandomRoll, SpeedPerturbation, WaveformAugment."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from audiosweep.audio import (
    PadOrTruncate,
    RandomRoll,
    SpeedPerturbation,
    WaveformAugment,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ramp(batch: int, length: int) -> torch.Tensor:
    # Values 1..L, so zero padding is distinguishable from signal.
    return (torch.arange(length, dtype=torch.float32) + 1).repeat(batch, 1)


# --- PadOrTruncate -------------------------------------------------------------------------


def test_pad_or_truncate_pads_zeros_at_end_and_keeps_start():
    x = torch.arange(1, 7, dtype=torch.float32).repeat(2, 1)
    assert torch.equal(PadOrTruncate(8)(x)[0], torch.tensor([1, 2, 3, 4, 5, 6, 0, 0.0]))
    assert torch.equal(PadOrTruncate(4)(x)[1], torch.tensor([1, 2, 3, 4.0]))
    assert torch.equal(PadOrTruncate(6)(x), x)


def test_pad_or_truncate_stacks_ragged_clips():
    clips = [torch.ones(3), torch.ones(10), np.ones(5, dtype=np.float32)]
    out = PadOrTruncate(5)(clips)
    assert out.shape == (3, 5)
    assert out.sum(dim=1).tolist() == [3.0, 5.0, 5.0]


# --- RandomRoll ------------------------------------------------------------------------------


def test_random_roll_is_a_per_sample_circular_shift_with_uniform_shift():
    batch, length = 4000, 8
    x = torch.arange(length, dtype=torch.float32).repeat(batch, 1)
    out = RandomRoll(p=1.0, generator=_gen(0))(x)
    shifts = (-out[:, 0].long()) % length
    for i in range(0, batch, 97):
        assert torch.equal(out[i], torch.roll(x[i], int(shifts[i])))
    counts = torch.bincount(shifts, minlength=length)
    assert int(counts.min()) > 400 and int(counts.max()) < 600  # expected 500 each


def test_random_roll_probability():
    batch, length = 4000, 8
    x = torch.arange(length, dtype=torch.float32).repeat(batch, 1)
    assert torch.equal(RandomRoll(p=0.0)(x), x)
    out = RandomRoll(p=0.5, generator=_gen(1))(x)
    unchanged = (out == x).all(dim=1).float().mean().item()
    # Unchanged: not applied (0.5) or applied with a shift that is a multiple of L (0.5 / 8).
    assert abs(unchanged - (0.5 + 0.5 / length)) < 0.03


# --- SpeedPerturbation -----------------------------------------------------------------------


def _stretch_nearest(row: np.ndarray, rate: float) -> np.ndarray:
    length = len(row)
    index = np.clip(np.round(np.arange(0, length, 1.0 / rate)), 0, length - 1).astype(int)
    return row[index]


@pytest.mark.parametrize("rate", [2.0, 1.25])
def test_speed_up_crops_a_window_of_the_nearest_neighbour_stretch(rate):
    batch, length = 32, 50
    x = torch.randn(batch, length)
    out = SpeedPerturbation(p=1.0, rates=(rate, rate), generator=_gen(2))(x).numpy()
    starts = set()
    for i in range(batch):
        stretched = _stretch_nearest(x[i].numpy(), rate)
        matches = [
            c
            for c in range(len(stretched) - length + 1)
            if np.array_equal(stretched[c : c + length], out[i])
        ]
        assert matches, f"row {i} is no window of the stretched signal"
        starts.add(matches[0])
    assert len(starts) > 5  # crop start is drawn per sample


def test_slow_down_pads_the_shorter_stretch_with_zeros_at_a_random_margin():
    batch, length, rate = 32, 50, 0.5
    x = _ramp(batch, length)
    out = SpeedPerturbation(p=1.0, rates=(rate, rate), generator=_gen(3))(x).numpy()
    margins = set()
    for i in range(batch):
        stretched = _stretch_nearest(x[i].numpy(), rate)  # 25 samples
        margin = int(np.argmax(out[i] != 0))
        expected = np.zeros(length, dtype=np.float32)
        expected[margin : margin + len(stretched)] = stretched
        np.testing.assert_array_equal(out[i], expected)
        margins.add(margin)
    assert min(margins) >= 0 and max(margins) <= length - 25
    assert len(margins) > 5


def test_speed_rates_are_drawn_per_sample_within_range():
    batch, length = 64, 4000
    x = _ramp(batch, length)
    out = SpeedPerturbation(p=1.0, rates=(0.5, 1.5), interpolation="linear", generator=_gen(4))(x)
    rates = []
    for i in range(batch):
        signal = out[i][out[i] != 0]
        # Linear interpolation of a ramp is a ramp of slope 1 / rate.
        slope = float((signal[-1] - signal[0]) / (len(signal) - 1))
        rates.append(1.0 / slope)
    rates = np.array(rates)
    assert rates.min() > 0.5 - 1e-3 and rates.max() < 1.5 + 1e-3
    assert rates.min() < 0.7 and rates.max() > 1.3 and len(np.unique(rates.round(3))) > 50


def test_speed_probability_and_identity():
    batch, length = 4000, 64
    x = torch.randn(batch, length)
    assert torch.equal(SpeedPerturbation(p=0.0)(x), x)
    out = SpeedPerturbation(p=0.5, generator=_gen(5))(x)
    assert out.shape == x.shape
    changed = (out != x).any(dim=1).float().mean().item()
    assert abs(changed - 0.5) < 0.05


def test_speed_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rates"):
        SpeedPerturbation(rates=(1.5, 0.5))
    with pytest.raises(ValueError, match="interpolation"):
        SpeedPerturbation(interpolation="cubic")
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        SpeedPerturbation()(torch.randn(10))


# --- WaveformAugment -----------------------------------------------------------------------


def _config(**kw) -> dict:
    return {"length": 16_000, **kw}


def test_seed_reproduces_and_pickled_copy_continues_the_stream():
    x = torch.randn(4, 15_000)
    a, b = WaveformAugment(**_config(seed=7)), WaveformAugment(**_config(seed=7))
    assert torch.equal(a(x), b(x))
    copy = pickle.loads(pickle.dumps(a))
    assert torch.equal(copy(x), a(x))
    c = WaveformAugment(**_config(seed=8))
    assert not torch.equal(c(x), b(x))
    c.reseed(7)
    assert torch.equal(c(x), WaveformAugment(**_config(seed=7))(x))


def test_pad_happens_before_roll_and_numpy_round_trips():
    aug = WaveformAugment(**_config(speed=False, seed=0))
    x = np.ones((4, 15_000), dtype=np.float32)
    out = aug(x)
    assert isinstance(out, np.ndarray) and out.shape == (4, 16_000)
    zeros = out == 0
    assert (zeros.sum(axis=1) == 1000).all()
    # The 1000 padded zeros were rolled with the signal: a circular run, not always at the end.
    assert not all(zeros[i, -1000:].all() for i in range(4))
    for i in range(4):
        starts = np.flatnonzero(zeros[i] & ~np.roll(zeros[i], 1))
        assert len(starts) == 1


def test_switched_off_stages_leave_the_batch_alone():
    x = torch.randn(3, 16_000)
    aug = WaveformAugment(**_config(roll=False, speed=False))
    assert torch.equal(aug(x), x)
    assert aug.output_length == 16_000
    assert [type(s).__name__ for s in WaveformAugment(**_config()).stages] == [
        "PadOrTruncate",
        "RandomRoll",
        "SpeedPerturbation",
    ]


def test_waveform_augment_rejects_integer_or_unbatched_input():
    aug = WaveformAugment(**_config())
    with pytest.raises(ValueError, match="float"):
        aug(torch.zeros(2, 100, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        aug(torch.zeros(100))


def test_keyword_options_choose_the_stages():
    aug = WaveformAugment(**_config(seed=1, speed=False, roll_p=0.0))
    assert aug.output_length == 16_000
    assert [type(s).__name__ for s in aug.stages] == ["PadOrTruncate", "RandomRoll"]
    x = torch.randn(2, 16_000)
    assert torch.equal(aug(x), x)  # roll with p = 0
    assert WaveformAugment(8000, pad_or_truncate=False).output_length is None
    with pytest.raises(TypeError, match="speed_probability"):
        WaveformAugment(speed_probability=0.3)
