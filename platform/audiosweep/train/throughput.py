"""A trial's own training throughput: steady-state samples/s over the steps after a few warm-up
steps of each epoch (the first steps pay for the data pipeline's start, allocator growth,
kernel-cache builds and cuDNN autotuning).

It shares the machine with whatever else runs (other trials, their data pipelines), so it
describes this run, not the model: the sweep report compares models by the controlled
side-by-side measurement of `sweep/throughput.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


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
