"""Benchmark: training's reader with and without `PromptResourceLimits`, side by side.

Passes of a new epoch's plan (`read_split(..., epoch=e)`, as training reads it) alternate
between the dataset's own execution callbacks and the same without `PromptResourceLimits`, in
one process and one Ray instance; whole passes are timed (start-up included: the cold start is
what differs), and the report gives medians and their ratio.

    audiosweep bench cold-start --data syn5000s2 --passes 8
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from audiosweep.bench.shuffle import pass_seconds
from audiosweep.data.execution_callbacks import PromptResourceLimits
from audiosweep.data.reader import read_split


def bench_cold_start(
    data: str | os.PathLike,
    *,
    split: str = "train",
    passes: int = 8,
    warmup: int = 2,
    batch_size: int = 32,
    read_cpus: float = 1.0,
) -> dict[str, Any]:
    """``passes`` timed passes per variant after ``warmup`` untimed ones; Ray must be up."""
    import ray

    runs: dict[str, list[float]] = {"prompt": [], "ray_default": []}
    clips_seen = set()
    for i in range(warmup + 2 * passes):
        variant = "prompt" if i % 2 else "ray_default"
        ds = read_split(data, split, batch_size=batch_size, read_cpus=read_cpus, seed=0, epoch=i)
        if variant == "ray_default":
            classes = ds.context.custom_execution_callback_classes
            ds.context.custom_execution_callback_classes = [
                c for c in classes if c is not PromptResourceLimits
            ]
        seconds, clips = pass_seconds(ds, batch_size)
        clips_seen.add(clips)
        if i >= warmup:
            runs[variant].append(clips / seconds)
    if len(clips_seen) != 1:
        raise RuntimeError(f"passes read different numbers of clips: {sorted(clips_seen)}")
    result: dict[str, Any] = {
        "split": split,
        "clips": clips_seen.pop(),
        "passes": passes,
        "warmup": warmup,
        "batch_size": batch_size,
        "read_cpus": read_cpus,
        "ray_cpus": ray.cluster_resources().get("CPU", 0),
    }
    for name, rates in runs.items():
        result[f"{name}_clips_per_s"] = statistics.median(rates)
        result[f"{name}_runs"] = rates
    result["ratio"] = result["prompt_clips_per_s"] / result["ray_default_clips_per_s"]
    return result


def format_result(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"bench cold start: split {r['split']}, {r['clips']} clips a pass, "
            f"medians of {r['passes']} whole passes per variant, alternating",
            f"  Ray's limits (first second one task at a time): "
            f"{r['ray_default_clips_per_s']:7.1f} clips/s",
            f"  PromptResourceLimits:                           "
            f"{r['prompt_clips_per_s']:7.1f} clips/s",
            f"  ratio: {r['ratio']:.3f}x",
        ]
    )


_CSV_VARIANTS = {
    "prompt": "with_prompt_resource_limits",
    "ray_default": "without_prompt_resource_limits",
}


def csv_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant; `ratio` is its clips/s over Ray's defaults'."""
    return [
        {
            "variant": variant,
            "clips_per_s": r[f"{key}_clips_per_s"],
            "ratio": r[f"{key}_clips_per_s"] / r["ray_default_clips_per_s"],
            "all_clips_per_s": [round(x, 1) for x in r[f"{key}_runs"]],
            "split": r["split"],
            "clips": r["clips"],
            "batch_size": r["batch_size"],
            "read_cpus": r["read_cpus"],
            "passes": r["passes"],
            "warmup": r["warmup"],
            "ray_cpus": r["ray_cpus"],
        }
        for key, variant in _CSV_VARIANTS.items()
    ]
