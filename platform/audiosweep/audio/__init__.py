"""On-device audio front end and augmentations (waveform, spectrogram, test-time)."""

from audiosweep.audio.frontend import AUDIOSET_MEAN, AUDIOSET_STD, FrontEnd
from audiosweep.audio.spectrogram import RandomErasing, SpecAugment
from audiosweep.audio.stats import compute_stats
from audiosweep.audio.tta import test_time_augment
from audiosweep.audio.waveform import (
    PadOrTruncate,
    RandomRoll,
    SpeedPerturbation,
    WaveformAugment,
)

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "FrontEnd",
    "PadOrTruncate",
    "RandomErasing",
    "RandomRoll",
    "SpecAugment",
    "SpeedPerturbation",
    "WaveformAugment",
    "compute_stats",
    "test_time_augment",
]
