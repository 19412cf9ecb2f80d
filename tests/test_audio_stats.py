"""compute_stats and the `audiosweep stats` command's parser and output."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torchaudio.transforms as T

from audiosweep.audio import compute_stats
from audiosweep.audio.commands import format_stats, register
from audiosweep.config import AudioConfig


def _waves(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.01, 0.5, size=(n, 1))
    return (rng.standard_normal((n, length)) * gains).astype(np.float32)


def _reference(waves: np.ndarray) -> tuple[float, float]:
    """Whole-set mean/std of MelSpectrogram -> dB values, computed in one go."""
    mel = T.MelSpectrogram(
        sample_rate=32_000, n_fft=1024, hop_length=320, f_min=50, f_max=14_000, n_mels=128
    )
    values = T.AmplitudeToDB()(mel(torch.from_numpy(waves))).double()
    return float(values.mean()), float(values.std(unbiased=False))


def test_stats_match_whole_set_moments_regardless_of_batching():
    waves = _waves(7, 16_000, seed=0)
    expected = _reference(waves)
    batches = [{"waveform": waves[i : i + 3]} for i in range(0, 7, 3)]  # sizes 3, 3, 1
    mean, std = compute_stats(batches)
    assert mean == pytest.approx(expected[0], rel=1e-5)
    assert std == pytest.approx(expected[1], rel=1e-5)
    single = compute_stats([{"waveform": torch.from_numpy(waves)}])
    assert single == pytest.approx((mean, std), rel=1e-9)


def test_max_clips_truncates_inside_a_batch_and_stops_reading():
    waves = _waves(6, 16_000, seed=1)
    pulled = []

    def batches():
        for i in range(0, 6, 4):
            pulled.append(i)
            yield {"waveform": waves[i : i + 4]}

    mean, std = compute_stats(batches(), max_clips=3)
    assert (mean, std) == pytest.approx(_reference(waves[:3]), rel=1e-5)
    assert pulled == [0]


def test_stats_ignore_configured_normalisation():
    waves = _waves(2, 16_000, seed=2)
    plain = compute_stats([{"waveform": waves}])
    other = compute_stats([{"waveform": waves}], AudioConfig(mean=-50.0, std=3.0))
    assert other == pytest.approx(plain, rel=1e-9)


def test_bad_batches_are_reported():
    with pytest.raises(ValueError, match="no clips"):
        compute_stats([])
    with pytest.raises(KeyError, match="batch 0 has no 'waveform'"):
        compute_stats([{"audio": np.zeros((1, 100), np.float32)}])
    with pytest.raises(ValueError, match=r"batch 0: 'waveform' must be \(B, L\)"):
        compute_stats([{"waveform": np.zeros(100, np.float32)}])


def test_stats_command_parses_and_prints_override_line():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["stats", "data/demo", "--split", "eval", "--max-clips", "50"])
    assert args.split == "eval" and args.max_clips == 50 and args.func.__name__ == "_stats"
    text = format_stats(-18.26961, 30.57349, 50, "data/demo / eval")
    assert text.splitlines()[-1] == "override: audio.mean=-18.2696 audio.std=30.5735"
