"""Log-mel front end on the training device: waveform (B, L) -> normalised log-mel (B, 1, M, T).

Spectrogram (power) -> [augmentation of the linear power spectrogram, training only] ->
MelScale -> AmplitudeToDB -> (x - mean) / std. Defaults: 32 kHz, n_fft 1024, hop 320,
128 mels in [50, 14000] Hz and the AudioSet statistics, so 10 s give (B, 1, 128, 1001).
"""

from __future__ import annotations

import torch
import torchaudio.transforms as T
from torch import Tensor, nn

from audiosweep.config import AUDIOSET_MEAN, AUDIOSET_STD, AudioConfig

__all__ = ["FrontEnd", "AUDIOSET_MEAN", "AUDIOSET_STD"]


class FrontEnd(nn.Module):
    """Waveform batch (B, L) or (B, 1, L) -> normalised log-mel (B, 1, n_mels, frames), float32.

    ``linear_augment`` (e.g. :class:`RandomErasing`) receives the power spectrogram
    (B, 1, n_fft // 2 + 1, frames); it runs when ``forward(..., augment=True)``, or by default
    (``augment=None``) in training mode only.
    """

    def __init__(
        self, config: AudioConfig | None = None, linear_augment: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.config = config = config or AudioConfig()
        self.spectrogram = T.Spectrogram(
            n_fft=config.n_fft,
            win_length=config.win_length or config.n_fft,
            hop_length=config.hop_length,
            power=2.0,
        )
        self.linear_augment = linear_augment
        self.mel = T.MelScale(
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
            f_min=config.f_min,
            f_max=config.f_max,
            n_stft=config.n_fft // 2 + 1,
        )
        self.to_db = T.AmplitudeToDB(stype="power", top_db=config.top_db)
        self.mean = float(config.mean)
        self.std = float(config.std)

    def forward(self, waveform: Tensor, augment: bool | None = None) -> Tensor:
        if waveform.dim() == 3 and waveform.shape[1] == 1:
            waveform = waveform.squeeze(1)
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, L) or (B, 1, L), got {tuple(waveform.shape)}")
        # dB of power spectra is not safe in reduced precision: keep the front end in float32.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            spec = self.spectrogram(waveform.float().unsqueeze(1))  # (B, 1, F, T)
            augment = self.training if augment is None else augment
            if augment and self.linear_augment is not None:
                spec = self.linear_augment(spec)
            # A 4-D input gives AmplitudeToDB a per-clip top_db floor.
            logmel = self.to_db(self.mel(spec))
            return (logmel - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"
