"""Throughput measured the same way for every case.

Training: steady-state samples/s over the steps after a few warm-up steps of each epoch (the
first steps pay for the data pipeline's start, allocator growth, kernel-cache builds and cuDNN
autotuning). Inference: a fixed
batch at the paper's input shape, timed after one warm-up pass, median of repeats.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTimer:
    """Steady-state training samples/s: the wall time from the end of each epoch's warm-up steps
    to the end of its last step (data loading included), summed over epochs.

    The device is synchronised only at those two points of an epoch, never per step, so the
    measurement does not stall a GPU's queue.
    """

    warmup_steps: int = 3
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    samples: int = 0
    seconds: float = 0.0
    _steps: int = 0
    _start: float | None = None
    _counted: int = 0

    def begin_epoch(self) -> None:
        self._steps, self._counted, self._start = 0, 0, None
        if self.warmup_steps == 0:
            self._mark()

    def step(self, batch_samples: int) -> None:
        self._steps += 1
        if self._start is not None:
            self._counted += batch_samples
        elif self._steps == self.warmup_steps:
            self._mark()

    def end_epoch(self) -> None:
        if self._start is not None and self._counted:
            _sync(self.device)
            self.seconds += time.perf_counter() - self._start
            self.samples += self._counted
        self._start = None

    def _mark(self) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


@torch.no_grad()
def inference_throughput(
    model: nn.Module,
    *,
    batch: int,
    n_mels: int,
    frames: int,
    device: torch.device,
    repeats: int = 3,
    dtype: str = "float32",
) -> dict[str, float | int | str]:
    """Samples/s of an eval forward pass on a random (batch, 1, n_mels, frames) input."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch, 1, n_mels, frames, device=device)
    autocast_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    times = []
    try:
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            model(x)  # warm-up: kernel caches, allocator
            for _ in range(max(1, repeats)):
                _sync(device)
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    median = statistics.median(times)
    return {
        "infer_samples_per_s": batch / median,
        "infer_batch": batch,
        "infer_shape": f"{batch}x1x{n_mels}x{frames}",
        "infer_dtype": dtype,
        "infer_threads": torch.get_num_threads(),
        "infer_device": str(device),
    }
