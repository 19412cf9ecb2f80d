"""Benchmark: clips/s of the per-epoch planned reader against the file-order reader.

Both are `read_split` over the same split, decoded the same way; they alternate within each
repeat (file order, then a new epoch of the plan read through the workers' local shuffle
buffer, as training reads it), and the report gives medians and the ratio. A whole pass is
timed, start-up included, as a training epoch sees it.

    audiosweep bench shuffle --data data/demo --repeats 5 [--sampling balanced]
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from audiosweep.data.reader import read_split
from audiosweep.data.schema import DatasetInfo


def pass_seconds(ds: Any, batch_size: int, shuffle_buffer: int = 0) -> tuple[float, int]:
    """Seconds for one whole pass over `ds` (start-up included) and the clips it held."""
    start = time.perf_counter()
    clips = 0
    for batch in ds.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        local_shuffle_buffer_size=shuffle_buffer or None,
        local_shuffle_seed=0 if shuffle_buffer else None,
    ):
        clips += len(batch["target"])
    return time.perf_counter() - start, clips


def bench_shuffle(
    data: str | os.PathLike,
    *,
    split: str = "train",
    repeats: int = 5,
    batch_size: int = 32,
    sampling: str = "uniform",
    read_cpus: float = 1.0,
    shuffle_buffer: int = 256,
) -> dict[str, Any]:
    import ray
    import torch

    info = DatasetInfo.load(data)
    ray.data.DataContext.get_current().enable_progress_bars = False
    times: dict[str, list[float]] = {"file_order": [], "planned": []}
    clips: dict[str, int] = {}
    # One pass of each first, untimed: Ray's worker processes and imports warm up.
    pass_seconds(read_split(data, split, batch_size=batch_size, read_cpus=read_cpus), batch_size)
    for epoch in range(repeats):
        plain = read_split(data, split, batch_size=batch_size, read_cpus=read_cpus)
        planned = read_split(
            data,
            split,
            batch_size=batch_size,
            read_cpus=read_cpus,
            seed=0,
            epoch=epoch,
            sampling=sampling,
        )
        for name, ds, buffer in (("file_order", plain, 0), ("planned", planned, shuffle_buffer)):
            seconds, n = pass_seconds(ds, batch_size, buffer)
            times[name].append(seconds)
            clips[name] = n
    result: dict[str, Any] = {
        "split": split,
        "clips": clips["file_order"],
        "clip_seconds": info.clip_seconds,
        "sample_rate": info.sample_rate,
        "batch_size": batch_size,
        "sampling": sampling,
        "shuffle_buffer": shuffle_buffer,
        "read_cpus": read_cpus,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "ray_cpus": ray.cluster_resources().get("CPU", 0),
    }
    for name, seconds in times.items():
        result[f"{name}_seconds"] = statistics.median(seconds)
        result[f"{name}_all_seconds"] = [round(s, 2) for s in seconds]
        result[f"{name}_clips_per_s"] = clips[name] / result[f"{name}_seconds"]
    result["cost"] = 1.0 - result["planned_clips_per_s"] / result["file_order_clips_per_s"]
    return result


def format_result(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"bench shuffle: split {r['split']}, {r['clips']} clips of {r['clip_seconds']:g} s at "
            f"{r['sample_rate']} Hz, batch {r['batch_size']}, sampling {r['sampling']}, "
            f"local shuffle buffer {r['shuffle_buffer']} rows",
            f"  medians of {r['repeats']} alternating repeats, torch threads {r['torch_threads']}, "
            f"CPUs {r['cpu_count']} (Ray cluster {r['ray_cpus']:g})",
            f"  file order:         {r['file_order_clips_per_s']:8.1f} clips/s "
            f"({r['file_order_seconds']:.2f} s per pass; all {r['file_order_all_seconds']})",
            f"  per-epoch planned:  {r['planned_clips_per_s']:8.1f} clips/s "
            f"({r['planned_seconds']:.2f} s per pass; all {r['planned_all_seconds']})",
            f"  cost of the per-epoch plan: {100 * r['cost']:+.1f}% of reader throughput",
        ]
    )


def csv_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per reader; `plan_cost_pct` is the run's figure, the same in both."""
    rows = []
    for variant, key, buffer in (
        ("file_order", "file_order", 0),
        ("per_epoch_plan", "planned", r["shuffle_buffer"]),
    ):
        rows.append(
            {
                "variant": variant,
                "clips_per_s": r[f"{key}_clips_per_s"],
                "pass_s": r[f"{key}_seconds"],
                "all_pass_s": r[f"{key}_all_seconds"],
                "plan_cost_pct": 100 * r["cost"],
                "split": r["split"],
                "clips": r["clips"],
                "clip_seconds": r["clip_seconds"],
                "sample_rate": r["sample_rate"],
                "batch_size": r["batch_size"],
                "sampling": r["sampling"] if key == "planned" else None,
                # The file-order passes read without a local buffer.
                "shuffle_buffer": buffer,
                "read_cpus": r["read_cpus"],
                "repeats": r["repeats"],
                "torch_threads": r["torch_threads"],
                "ray_cpus": r["ray_cpus"],
            }
        )
    return rows
