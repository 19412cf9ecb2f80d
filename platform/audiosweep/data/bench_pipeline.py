"""Benchmark: clips/s of the Ray Data reader against a plain pyarrow + soundfile loop.

Both read the same shards of one split in the same run, alternating, repeated; each timing
covers a whole pass including the pipeline's start-up, as a training epoch would see it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from .plain_reader import iter_numpy_batches
from .reader import read_split
from .schema import DatasetInfo


def _time_pass(make_batches: Callable[[], Iterable[dict[str, Any]]]) -> tuple[float, float, int]:
    """Seconds for a whole pass, seconds to the first batch, clips seen."""
    start = time.perf_counter()
    first = None
    clips = 0
    for batch in make_batches():
        if first is None:
            first = time.perf_counter() - start
        clips += len(batch["target"])
    return time.perf_counter() - start, first or 0.0, clips


def bench_pipeline(
    data: str | os.PathLike,
    *,
    split: str = "train",
    repeats: int = 3,
    batch_size: int = 32,
    clip_seconds: float | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    import ray
    import torch

    info = DatasetInfo.load(data)
    started_ray = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started_ray = True
    ray.data.DataContext.get_current().enable_progress_bars = False

    def ray_pass():
        ds = read_split(data, split, clip_seconds=clip_seconds, batch_size=batch_size)
        return ds.iter_batches(batch_size=batch_size, batch_format="numpy")

    def plain_pass():
        return iter_numpy_batches(data, split, batch_size=batch_size, clip_seconds=clip_seconds)

    runs: dict[str, list[tuple[float, float, int]]] = {"ray": [], "plain": []}
    try:
        for _ in range(repeats):
            runs["plain"].append(_time_pass(plain_pass))
            runs["ray"].append(_time_pass(ray_pass))
        cluster_cpus = ray.cluster_resources().get("CPU", 0)
    finally:
        if started_ray:
            ray.shutdown()

    result: dict[str, Any] = {
        "split": split,
        "clips": runs["plain"][0][2],
        "clip_seconds": clip_seconds if clip_seconds is not None else info.clip_seconds,
        "sample_rate": info.sample_rate,
        "batch_size": batch_size,
        "dtype": "float32",
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "ray_cpus": cluster_cpus,
    }
    for name, timings in runs.items():
        clips = timings[0][2]
        if any(t[2] != clips for t in timings):
            raise RuntimeError(
                f"{name} reader returned different clip counts: {[t[2] for t in timings]}"
            )
        result[f"{name}_seconds"] = statistics.median(t[0] for t in timings)
        result[f"{name}_first_batch_seconds"] = statistics.median(t[1] for t in timings)
        result[f"{name}_clips_per_s"] = clips / result[f"{name}_seconds"]
    if runs["ray"][0][2] != runs["plain"][0][2]:
        raise RuntimeError("the Ray reader and the plain loop saw different numbers of clips")
    result["ratio"] = result["ray_clips_per_s"] / result["plain_clips_per_s"]
    return result


def format_result(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"bench pipeline: split {r['split']}, {r['clips']} clips of {r['clip_seconds']:g} s "
            f"at {r['sample_rate']} Hz -> waveform ({r['batch_size']}, "
            f"{round(r['clip_seconds'] * r['sample_rate'])}) {r['dtype']}",
            f"  batch {r['batch_size']}, medians of {r['repeats']} repeats, torch threads "
            f"{r['torch_threads']}, CPUs {r['cpu_count']} (Ray cluster {r['ray_cpus']:g})",
            f"  plain pyarrow+soundfile: {r['plain_clips_per_s']:8.1f} clips/s "
            f"({r['plain_seconds']:.2f} s per pass, first batch {r['plain_first_batch_seconds']:.2f} s)",
            f"  Ray Data read_split:     {r['ray_clips_per_s']:8.1f} clips/s "
            f"({r['ray_seconds']:.2f} s per pass, first batch {r['ray_first_batch_seconds']:.2f} s)",
            f"  ratio Ray / plain: {r['ratio']:.2f}x",
        ]
    )
