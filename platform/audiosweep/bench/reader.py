"""`audiosweep bench reader`: clips/s of the Ray Data reader against a plain pyarrow +
soundfile loop.

Both read the same shards of one split in the same run, alternating, repeated. Each pass is
timed whole (start-up included, as a training epoch sees it) and split in two: the time to
the first batch (start-up) and the clips/s after it (steady state).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from audiosweep.bench import ray_session
from audiosweep.config import DataConfig
from audiosweep.data.plain_reader import iter_numpy_batches
from audiosweep.data.reader import read_split
from audiosweep.data.schema import DatasetInfo


def _time_pass(
    make_batches: Callable[[], Iterable[dict[str, Any]]],
) -> tuple[float, float, int, int]:
    """Seconds for a whole pass, seconds to the first batch, clips seen, clips in the first
    batch."""
    start = time.perf_counter()
    first = None
    clips = first_clips = 0
    for batch in make_batches():
        if first is None:
            first = time.perf_counter() - start
            first_clips = len(batch["target"])
        clips += len(batch["target"])
    return time.perf_counter() - start, first or 0.0, clips, first_clips


def _steady_clips_per_s(timing: tuple[float, float, int, int]) -> float:
    total, first, clips, first_clips = timing
    return (clips - first_clips) / max(total - first, 1e-9)


def bench_reader(
    data: str | os.PathLike,
    *,
    split: str = "train",
    repeats: int = 3,
    batch_size: int = 32,
    clip_seconds: float | None = None,
    address: str | None = None,
    planned: bool = False,
    mix_rows: int = DataConfig.mix_rows,
    read_cpus: float = DataConfig.read_cpus,
) -> dict[str, Any]:
    import ray
    import torch

    info = DatasetInfo.load(data)
    epochs = iter(range(1 << 30))

    def ray_pass():
        # planned: a new epoch of the per-epoch plan each pass, as training reads it.
        plan = {"seed": 0, "epoch": next(epochs), "mix_rows": mix_rows} if planned else {}
        ds = read_split(
            data,
            split,
            clip_seconds=clip_seconds,
            batch_size=batch_size,
            read_cpus=read_cpus,
            **plan,
        )
        return ds.iter_batches(batch_size=batch_size, batch_format="numpy")

    def plain_pass():
        return iter_numpy_batches(data, split, batch_size=batch_size, clip_seconds=clip_seconds)

    runs: dict[str, list[tuple[float, float, int, int]]] = {"ray": [], "plain": []}
    with ray_session(address):
        for _ in range(repeats):
            runs["plain"].append(_time_pass(plain_pass))
            runs["ray"].append(_time_pass(ray_pass))
        cluster_cpus = ray.cluster_resources().get("CPU", 0)

    result: dict[str, Any] = {
        "split": split,
        "reader": (f"per-epoch plan, mix_rows {mix_rows}, " if planned else "file order, ")
        + f"read_cpus {read_cpus:g}",
        "planned": planned,
        "mix_rows": mix_rows if planned else None,
        "read_cpus": read_cpus,
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
        result[f"{name}_steady_clips_per_s"] = statistics.median(map(_steady_clips_per_s, timings))
    if runs["ray"][0][2] != runs["plain"][0][2]:
        raise RuntimeError("the Ray reader and the plain loop saw different numbers of clips")
    result["ratio"] = result["ray_clips_per_s"] / result["plain_clips_per_s"]
    result["steady_ratio"] = result["ray_steady_clips_per_s"] / result["plain_steady_clips_per_s"]
    return result


def format_result(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"bench reader: split {r['split']}, {r['clips']} clips of {r['clip_seconds']:g} s "
            f"at {r['sample_rate']} Hz -> waveform ({r['batch_size']}, "
            f"{round(r['clip_seconds'] * r['sample_rate'])}) {r['dtype']}",
            f"  batch {r['batch_size']}, medians of {r['repeats']} repeats, torch threads "
            f"{r['torch_threads']}, CPUs {r['cpu_count']} (Ray cluster {r['ray_cpus']:g})",
            "                          steady state   whole pass      start-up (first batch)",
            f"  plain pyarrow+soundfile: {r['plain_steady_clips_per_s']:7.1f} clips/s "
            f"{r['plain_clips_per_s']:7.1f} clips/s  {r['plain_first_batch_seconds']:6.2f} s",
            f"  Ray Data read_split ({r['reader']}):\n"
            f"                           {r['ray_steady_clips_per_s']:7.1f} clips/s "
            f"{r['ray_clips_per_s']:7.1f} clips/s  {r['ray_first_batch_seconds']:6.2f} s",
            f"  ratio Ray / plain: {r['steady_ratio']:.2f}x at steady state, "
            f"{r['ratio']:.2f}x over whole passes ({r['ray_seconds']:.1f} s vs "
            f"{r['plain_seconds']:.1f} s)",
        ]
    )


def csv_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per reader: the plain loop, then Ray Data (its ratios to the plain loop)."""
    setup = {
        "split": r["split"],
        "clips": r["clips"],
        "clip_seconds": r["clip_seconds"],
        "sample_rate": r["sample_rate"],
        "batch_size": r["batch_size"],
        "dtype": r["dtype"],
        "repeats": r["repeats"],
        "torch_threads": r["torch_threads"],
        "ray_cpus": r["ray_cpus"],
    }
    ray_name = "ray_data_planned" if r["planned"] else "ray_data_file_order"
    rows = []
    for name, key in (("plain_pyarrow_soundfile", "plain"), (ray_name, "ray")):
        steady, whole = r[f"{key}_steady_clips_per_s"], r[f"{key}_clips_per_s"]
        rows.append(
            {
                "reader": name,
                "steady_clips_per_s": steady,
                "whole_pass_clips_per_s": whole,
                "whole_pass_s": r[f"{key}_seconds"],
                "startup_s": r[f"{key}_first_batch_seconds"],
                "steady_vs_plain": steady / r["plain_steady_clips_per_s"],
                "whole_vs_plain": whole / r["plain_clips_per_s"],
                **setup,
                # Ray's read settings; the plain loop has none.
                "read_cpus": r["read_cpus"] if key == "ray" else None,
                "mix_rows": r["mix_rows"] if key == "ray" else None,
            }
        )
    return rows
