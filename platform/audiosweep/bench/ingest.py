"""Benchmark: clips/s of `prepare audioset` on this machine's process pool and on a Ray cluster.

The input is an AudioSet-like download written once: ``--clips`` 10 s stereo WAV files at
44.1 kHz (so every clip is decoded, downmixed, resampled to 32 kHz and FLAC-encoded) and a
segments CSV. Variants run alternately, each ingest into a fresh folder, and the report gives
medians. Before timing on Ray, one untimed ingest brings the autoscaler's nodes up and warms
the workers, and the run waits until ``--nodes`` worker nodes are alive.

    audiosweep bench ingest --input /tmp/bench_in --clips 300 \\
        --address 127.0.0.1:6390 --nodes 2 --repeats 3
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audiosweep.data.ingest import resolve_labels
from audiosweep.data.ingest_audioset import prepare_audioset

SOURCE_RATE = 44100


def write_input(folder: Path, clips: int, seconds: float = 10.0, seed: int = 0) -> Path:
    """Stereo 44.1 kHz WAV clips and a segments CSV (kept and reused if complete)."""
    csv = folder / "segments.csv"
    if csv.is_file() and len(csv.read_text().splitlines()) == clips + 1:
        return folder
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    mids = resolve_labels(None).mids
    lines = ["# YTID, start_seconds, end_seconds, positive_labels"]
    frames = int(seconds * SOURCE_RATE)
    t = np.arange(frames, dtype=np.float32) / SOURCE_RATE
    for i in range(clips):
        rng = np.random.default_rng([seed, i])
        noise = np.convolve(
            rng.standard_normal(frames + 7).astype(np.float32), np.full(8, 0.125), "valid"
        )
        left = 0.1 * noise + 0.05 * np.sin(2 * np.pi * rng.uniform(110, 2000) * t)
        wave = np.stack([left, 0.7 * left + 0.02 * noise[::-1]], axis=1)
        sf.write(audio / f"clip{i:06d}.wav", wave.astype(np.float32), SOURCE_RATE, "PCM_16")
        labels = ",".join(mids[k] for k in rng.choice(len(mids), rng.integers(1, 4), False))
        lines.append(f'clip{i:06d}, 0.000, {seconds:.3f}, "{labels}"')
    csv.write_text("\n".join(lines) + "\n")
    return folder


def _ingest_seconds(input_dir: Path, out_root: Path, **kwargs: Any) -> float:
    out = Path(tempfile.mkdtemp(dir=out_root))
    shutil.rmtree(out)
    start = time.perf_counter()
    entries = prepare_audioset(
        out,
        audio_dir=input_dir / "audio",
        segments=input_dir / "segments.csv",
        labels=resolve_labels(None),
        progress=False,
        **kwargs,
    )
    seconds = time.perf_counter() - start
    assert entries["train"]["rejected"] == [], entries["train"]["rejected"][:3]
    shutil.rmtree(out)
    return seconds


def _pool_start_seconds(workers: int) -> float:
    """What the local pool pays before its first clip: spawning and importing torch."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from audiosweep.data.ingest import _init_worker

    start = time.perf_counter()
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker
    ) as p:
        list(p.map(abs, range(workers)))
    return time.perf_counter() - start


def _wait_for_nodes(nodes: int, timeout: float = 300.0) -> int:
    import ray

    deadline = time.monotonic() + timeout
    while True:
        alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        if len(alive) >= nodes or time.monotonic() > deadline:
            return len(alive)
        time.sleep(1.0)


def bench_ingest(
    input_dir: Path,
    *,
    clips: int,
    address: str | None,
    nodes: int,
    workers: int,
    repeats: int,
    shard_clips: int,
    out_root: Path,
) -> dict[str, Any]:
    write_input(input_dir, clips)
    out_root.mkdir(parents=True, exist_ok=True)
    # Keyed by what the CSV calls each variant; `labels` is what the report prints.
    variants: dict[str, dict[str, Any]] = {"local_pool": {"workers": workers}}
    labels = {"local_pool": f"local pool, {workers} processes"}
    alive = 0
    if address:
        from audiosweep.ray_cluster import connect

        connect(address, worker_logs=False)
        _ingest_seconds(input_dir, out_root, address=address, shard_clips=shard_clips)
        alive = _wait_for_nodes(nodes)
        variants["ray_tasks"] = {"address": address, "shard_clips": shard_clips}
        labels["ray_tasks"] = f"Ray tasks, {alive} node(s)"
    times: dict[str, list[float]] = {name: [] for name in variants}
    pool_start: list[float] = []
    for _ in range(repeats):
        pool_start.append(_pool_start_seconds(workers))
        for name, kwargs in variants.items():
            times[name].append(_ingest_seconds(input_dir, out_root, **kwargs))
            print(f"{labels[name]}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    return {
        "clips": clips,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "workers": workers,
        "nodes": alive,
        "shard_clips": shard_clips,
        "pool_start_seconds": statistics.median(pool_start),
        "labels": labels,
        "seconds": {name: statistics.median(t) for name, t in times.items()},
        "all_seconds": {name: [round(x, 1) for x in t] for name, t in times.items()},
    }


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"bench ingest: {r['clips']} clips, 10 s stereo 44.1 kHz WAV -> 32 kHz mono FLAC, "
        f"medians of {r['repeats']} alternating repeats, {r['cpu_count']} CPUs on this machine"
    ]
    base = None
    for name, seconds in r["seconds"].items():
        rate = r["clips"] / seconds
        base = base or rate
        lines.append(
            f"  {r['labels'][name]:<28} {rate:7.1f} clips/s  "
            f"({seconds:.1f} s; {r['all_seconds'][name]})  {rate / base:.2f}x"
        )
    lines.append(
        f"  the local pool's start-up (spawn + import torch): {r['pool_start_seconds']:.1f} s "
        "of each of its runs"
    )
    return "\n".join(lines)


def csv_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant; `vs_local` is its clips/s over the local pool's."""
    base = r["clips"] / r["seconds"]["local_pool"]
    rows = []
    for name, seconds in r["seconds"].items():
        local = name == "local_pool"
        rows.append(
            {
                "variant": name,
                "clips_per_s": r["clips"] / seconds,
                "ingest_s": seconds,
                "all_ingest_s": r["all_seconds"][name],
                "vs_local": r["clips"] / seconds / base,
                # Each local run pays its pool's start-up; Ray's workers are warm.
                "pool_start_s": r["pool_start_seconds"] if local else None,
                "workers": r["workers"] if local else None,
                "nodes": None if local else r["nodes"],
                "shard_clips": None if local else r["shard_clips"],
                "clips": r["clips"],
                "repeats": r["repeats"],
            }
        )
    return rows
