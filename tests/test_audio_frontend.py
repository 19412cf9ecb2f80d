"""Log-mel front end: shapes, values against a NumPy STFT + HTK mel reference, augment hook."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from audiosweep.audio import AUDIOSET_MEAN, AUDIOSET_STD, FrontEnd, RandomErasing
from audiosweep.config import AudioConfig, ConfigError


def _numpy_logmel(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Centred STFT (periodic Hann, reflect padding), power, HTK mel triangles, 10 log10."""
    n_fft, hop = cfg.n_fft, cfg.hop_length
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = 1 + (len(padded) - n_fft) // hop
    power = np.stack(
        [
            np.abs(np.fft.rfft(padded[i * hop : i * hop + n_fft] * window)) ** 2
            for i in range(frames)
        ],
        axis=1,
    )  # (n_fft//2+1, frames)

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, cfg.sample_rate // 2, n_fft // 2 + 1)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    bank = np.zeros((cfg.n_mels, len(freqs)))
    for m in range(cfg.n_mels):
        rising = (freqs - f_pts[m]) / (f_pts[m + 1] - f_pts[m])
        falling = (f_pts[m + 2] - freqs) / (f_pts[m + 2] - f_pts[m + 1])
        bank[m] = np.maximum(0.0, np.minimum(rising, falling))
    mel = bank @ power
    return 10.0 * np.log10(np.maximum(mel, 1e-10))


def test_ten_seconds_give_128_by_1001():
    out = FrontEnd().eval()(torch.randn(2, 320_000) * 0.1)
    assert out.shape == (2, 1, 128, 1001)
    assert out.dtype == torch.float32


def test_values_match_numpy_reference_and_normalisation():
    cfg = AudioConfig()
    wave = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32) * 0.1
    out = FrontEnd(cfg).eval()(torch.from_numpy(wave)).numpy()
    for i in range(2):
        expected = (_numpy_logmel(wave[i].astype(np.float64), cfg) - AUDIOSET_MEAN) / AUDIOSET_STD
        assert out[i, 0].shape == expected.shape
        np.testing.assert_allclose(out[i, 0], expected, atol=2e-4)


def test_config_changes_shape_and_statistics():
    cfg = AudioConfig(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=64, f_max=8000)
    wave = torch.randn(3, 16_000) * 0.1
    out = FrontEnd(cfg).eval()(wave)
    assert out.shape == (3, 1, 64, cfg.num_frames(16_000)) == (3, 1, 64, 101)
    raw = FrontEnd(AudioConfig(**{**cfg.__dict__, "mean": 0.0, "std": 1.0})).eval()(wave)
    shifted = FrontEnd(AudioConfig(**{**cfg.__dict__, "mean": -5.0, "std": 2.0})).eval()(wave)
    torch.testing.assert_close(shifted, (raw + 5.0) / 2.0)


def test_accepts_channel_axis_and_rejects_bad_shapes():
    fe = FrontEnd().eval()
    wave = torch.randn(2, 6400)
    torch.testing.assert_close(fe(wave.unsqueeze(1)), fe(wave))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        fe(torch.randn(2, 2, 6400))


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="f_max"):
        AudioConfig(f_max=20_000)  # above Nyquist of 32 kHz
    with pytest.raises(ConfigError, match="std"):
        AudioConfig(std=0.0)


class _ZeroFrames(nn.Module):
    """Deterministic erasure of frames [10, 20) that records what it was given."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, spec):
        self.seen = spec.clone()
        spec = spec.clone()
        spec[..., 10:20] = 0.0
        return spec


def test_linear_augment_sees_power_spectrogram_before_mel_and_only_in_training():
    hook = _ZeroFrames()
    fe = FrontEnd(linear_augment=hook)
    wave = torch.randn(2, 32_000) * 0.1
    out = fe.train()(wave)
    # The hook got the linear power spectrogram: 513 bins, non-negative.
    assert hook.seen.shape == (2, 1, 513, 101)
    assert bool((hook.seen >= 0).all())
    torch.testing.assert_close(hook.seen, fe.spectrogram(wave.unsqueeze(1)))
    # Zero power before the mel scale becomes the dB floor (10 log10(1e-10)) after it.
    floor = (-100.0 - AUDIOSET_MEAN) / AUDIOSET_STD
    torch.testing.assert_close(out[..., 10:20], torch.full_like(out[..., 10:20], floor))
    assert bool((out[..., :10] > floor + 0.5).all())

    hook.seen = None
    clean = fe.eval()(wave)
    assert hook.seen is None
    assert bool((clean[..., 10:20] > floor + 0.5).all())


def test_random_erasing_in_front_end_changes_training_output_only():
    torch.manual_seed(0)
    wave = torch.randn(4, 32_000) * 0.1
    fe = FrontEnd(linear_augment=RandomErasing(p=1.0, inplace=True))
    random.seed(0)
    train_out = fe.train()(wave)
    eval_out = fe.eval()(wave)
    floor = (-100.0 - AUDIOSET_MEAN) / AUDIOSET_STD
    for i in range(4):
        assert not torch.equal(train_out[i], eval_out[i])
        # Const erasing zeroes a block of linear power: some mel cells hit the dB floor.
        assert bool((train_out[i] <= floor + 1e-4).any())
    assert bool((eval_out > floor + 1e-4).all())


def test_bf16_autocast_keeps_float32_front_end():
    fe = FrontEnd().eval()
    wave = torch.randn(1, 16_000) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fe(wave)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fe(wave))


def test_augment_flag_overrides_the_mode():
    hook = _ZeroFrames()
    fe = FrontEnd(linear_augment=hook).eval()
    wave = torch.randn(1, 16_000) * 0.1
    floor = (-100.0 - AUDIOSET_MEAN) / AUDIOSET_STD
    forced = fe(wave, augment=True)
    torch.testing.assert_close(forced[..., 10:20], torch.full_like(forced[..., 10:20], floor))
    hook.seen = None
    fe.train()(wave, augment=False)
    assert hook.seen is None
