"""Models timed side by side: interleaved repeats, medians and paired ratios.

Every repeat runs one batch of each model in turn (every other repeat in reverse order), so
that load from other processes (and a GPU's clocks) falls on all of them alike; figures are
medians over repeats, and a ratio between two models is the median of their per-repeat ratios. `audiosweep bench dcls` and the sweep's
controlled throughput measurement (`sweep/throughput.py`) both time through here.

Imports torch only: `audiosweep bench dcls` must run on a stock PyTorch image.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

MODES = ("inference", "train")
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
# "wall": elapsed time. "thread": the calling thread's CPU time, for one-thread CPU runs, where
# torch computes every op in that thread: what the batch costs an idle core, whatever else
# shares the machine (other processes only delay it, and wall time counts the delays).
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


@dataclass
class Timed:
    """One model of a side-by-side run and its timings (seconds per batch, per mode)."""

    name: str
    model: nn.Module
    channels_last_input: bool = False
    modes: tuple[str, ...] = MODES  # e.g. a baked model is for inference only
    warmup: bool = True  # a very slow model may skip its warm-up run
    max_repeats: int | None = None  # None: every repeat
    seconds: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(
    entry: Timed,
    mode: str,
    x: torch.Tensor,
    target: torch.Tensor,
    dtype: str = "float32",
    batches: int = 1,
    clock: str = "wall",
) -> tuple[float, torch.Tensor]:
    """Seconds per batch of ``batches`` batches back to back: an eval forward (``inference``)
    or forward + loss + backward (``train``, no optimiser step), under autocast for a reduced
    ``dtype``, timed by ``clock`` (`CLOCKS`)."""
    model = entry.model
    if entry.channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast_dtype = DTYPES[dtype]
    autocast = torch.autocast(
        x.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    )
    torch.manual_seed(1234)  # same drop-path draws for every model, so their logits compare
    now = CLOCKS[clock]
    sync(x.device)
    start = now()
    for _ in range(batches):
        if mode == "inference":
            with torch.no_grad(), autocast:
                out = model(x)
        else:
            model.zero_grad(set_to_none=True)
            with autocast:
                out = model(x)
                loss = nn.functional.binary_cross_entropy_with_logits(out.float(), target)
            loss.backward()
    sync(x.device)
    return (now() - start) / batches, out.detach()


def time_interleaved(
    entries: Sequence[Timed],
    *,
    modes: Sequence[str],
    x: torch.Tensor,
    target: torch.Tensor,
    repeats: int,
    dtype: str = "float32",
    log: Callable[[str], None] | None = None,
    min_sample_s: float = 0.0,
    clock: str = "wall",
) -> None:
    """Fill each entry's ``seconds[mode]`` (per batch): per mode, one warm-up batch each
    (kernel caches, allocator, autotuning), then ``repeats`` rounds over all entries in turn
    (every other round in reverse order).

    With ``min_sample_s``, each timing runs as many batches back to back as fill that long
    (counted from a second warm-up batch): on a loaded machine a sample of a few milliseconds
    is one scheduler time slice more or less, a longer one sees the load's average."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, not {repeats}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if clock not in CLOCKS or (clock == "thread" and (x.is_cuda or torch.get_num_threads() > 1)):
        raise ValueError(f"clock {clock!r}: 'wall', or 'thread' for a one-thread CPU run")
    for mode in modes:
        batches: dict[str, int] = {}
        for entry in entries:
            entry.model.train(mode == "train")
            if entry.warmup and mode in entry.modes:
                run_once(entry, mode, x, target, dtype)
                if min_sample_s > 0:
                    once, _ = run_once(entry, mode, x, target, dtype, clock=clock)
                    batches[entry.name] = max(1, math.ceil(min_sample_s / max(once, 1e-6)))
        for r in range(repeats):
            # Every other round in reverse, so that no model always follows the same one.
            for entry in entries if r % 2 == 0 else reversed(entries):
                if mode not in entry.modes or (
                    entry.max_repeats is not None and r >= entry.max_repeats
                ):
                    continue
                n = batches.get(entry.name, 1)
                seconds, out = run_once(entry, mode, x, target, dtype, n, clock)
                entry.seconds[mode].append(seconds)
                entry.outputs[mode] = out
                if log is not None:
                    log(f"  {mode:9s} repeat {r + 1}/{repeats} {entry.name:24s} {seconds:8.3f} s")
    for entry in entries:
        entry.model.eval()


def paired_ratio(reference: Sequence[float], seconds: Sequence[float]) -> float:
    """Median over repeats of reference time / this time: the speed relative to the reference
    within each round (> 1: faster). Rounds one of them lacks are left out."""
    pairs = [r / s for r, s in zip(reference, seconds, strict=False) if s > 0]
    return statistics.median(pairs) if pairs else float("nan")
