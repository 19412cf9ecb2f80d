"""On-device audio front end and augmentations (waveform, spectrogram, test-time)."""

from audiosweep.audio.frontend import AUDIOSET_MEAN, AUDIOSET_STD, FrontEnd, FrontEndConfig
from audiosweep.audio.spectrogram import RandomErasing, SpecAugment
from audiosweep.audio.stats import compute_stats
from audiosweep.audio.tta import test_time_augment
from audiosweep.audio.waveform import (
    PadOrTruncate,
    RandomRoll,
    SpeedPerturbation,
    WaveformAugment,
    WaveformAugmentConfig,
)

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "FrontEnd",
    "FrontEndConfig",
    "PadOrTruncate",
    "RandomErasing",
    "RandomRoll",
    "SpecAugment",
    "SpeedPerturbation",
    "WaveformAugment",
    "WaveformAugmentConfig",
    "compute_stats",
    "test_time_augment",
]
