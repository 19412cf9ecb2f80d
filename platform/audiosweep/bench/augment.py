"""`audiosweep bench augment`: the waveform augmentations and the mel front end, timed side by
side."""

from __future__ import annotations

from typing import Any


def run_augment_bench(
    batch: int = 8,
    seconds: float = 10.0,
    sample_rate: int = 32_000,
    repeats: int = 5,
    threads: int | None = None,
) -> dict[str, Any]:
    """Print and return wall and CPU seconds (medians) of each stage:
    {"setup": ..., "results": [{stage, label, wall_s, cpu_s, cpu_vs_frontend}]}."""
    import statistics
    import time

    import torch
    import torchaudio.functional as AF

    from audiosweep.audio.frontend import FrontEnd
    from audiosweep.audio.waveform import PadOrTruncate, RandomRoll, SpeedPerturbation
    from audiosweep.config import AudioConfig

    if threads:
        torch.set_num_threads(threads)
    length = int(seconds * sample_rate)
    x = torch.randn(batch, length)
    frontend = FrontEnd(AudioConfig(sample_rate=sample_rate)).eval()
    # stage: (what the report prints, the work timed)
    cases = {
        "frontend_log_mel": ("frontend (log-mel)", lambda: frontend(x)),
        "pad_or_truncate": ("PadOrTruncate", lambda: PadOrTruncate(length)(x[:, : length - 1000])),
        "random_roll": ("RandomRoll", lambda: RandomRoll(p=1.0)(x)),
        "speed_nearest_p0.5": (
            "SpeedPerturbation nearest p=0.5",
            lambda: SpeedPerturbation(p=0.5)(x),
        ),
        "speed_nearest_p1": ("SpeedPerturbation nearest p=1", lambda: SpeedPerturbation(p=1.0)(x)),
        "speed_linear_p1": (
            "SpeedPerturbation linear p=1",
            lambda: SpeedPerturbation(p=1.0, interpolation="linear")(x),
        ),
        "resample_32k_to_35k": (
            "torchaudio resample 32k->35k (one rate)",
            lambda: AF.resample(x, 32_000, 35_000),
        ),
    }
    setup = {
        "input_shape": [batch, length],
        "batch": batch,
        "seconds": seconds,
        "sample_rate": sample_rate,
        "dtype": str(x.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }
    print(
        f"input ({batch}, {length}) {setup['dtype']}, threads={setup['threads']}, "
        f"median of {repeats} repeats; wall and process CPU time (CPU time is the steadier "
        "figure on a shared machine)"
    )
    wall, cpu = {}, {}
    with torch.no_grad():
        for stage, (_, fn) in cases.items():
            fn()
            walls, cpus = [], []
            for _ in range(repeats):
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                fn()
                walls.append(time.perf_counter() - start_wall)
                cpus.append(time.process_time() - start_cpu)
            wall[stage], cpu[stage] = statistics.median(walls), statistics.median(cpus)
    # A floor on the base: at tiny sizes the front end can take less than the clock's tick.
    base = max(cpu["frontend_log_mel"], 1e-9)
    results = []
    for stage, (label, _) in cases.items():
        print(
            f"{label:42s} wall {wall[stage] * 1e3:8.1f} ms  cpu {cpu[stage] * 1e3:8.1f} ms  "
            f"{cpu[stage] / base:5.2f}x frontend (cpu)"
        )
        results.append(
            {
                "stage": stage,
                "label": label,
                "wall_s": wall[stage],
                "cpu_s": cpu[stage],
                "cpu_vs_frontend": cpu[stage] / base,
            }
        )
    return {"setup": setup, "results": results}


def csv_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage, in milliseconds per batch."""
    setup = {**r["setup"], "input_shape": "x".join(map(str, r["setup"]["input_shape"]))}
    return [
        {
            "stage": row["stage"],
            "wall_ms_per_batch": row["wall_s"] * 1e3,
            "cpu_ms_per_batch": row["cpu_s"] * 1e3,
            "cpu_vs_frontend": row["cpu_vs_frontend"],
            **setup,
        }
        for row in r["results"]
    ]
