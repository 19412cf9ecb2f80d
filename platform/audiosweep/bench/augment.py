"""Benchmark: the waveform augmentations and the mel front end, timed side by side."""

from __future__ import annotations


def run_augment_bench(
    batch: int = 8,
    seconds: float = 10.0,
    sample_rate: int = 32_000,
    repeats: int = 5,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Print and return wall and CPU seconds (medians) of each case."""
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
    cases = {
        "frontend (log-mel)": lambda: frontend(x),
        "PadOrTruncate": lambda: PadOrTruncate(length)(x[:, : length - 1000]),
        "RandomRoll": lambda: RandomRoll(p=1.0)(x),
        "SpeedPerturbation nearest p=0.5": lambda: SpeedPerturbation(p=0.5)(x),
        "SpeedPerturbation nearest p=1": lambda: SpeedPerturbation(p=1.0)(x),
        "SpeedPerturbation linear p=1": lambda: SpeedPerturbation(p=1.0, interpolation="linear")(x),
        "torchaudio resample 32k->35k (one rate)": lambda: AF.resample(x, 32_000, 35_000),
    }
    print(
        f"input ({batch}, {length}) float32, threads={torch.get_num_threads()}, "
        f"median of {repeats} repeats; wall and process CPU time (CPU time is the steadier "
        "figure on a shared machine)"
    )
    wall, cpu = {}, {}
    with torch.no_grad():
        for name, fn in cases.items():
            fn()
            walls, cpus = [], []
            for _ in range(repeats):
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                fn()
                walls.append(time.perf_counter() - start_wall)
                cpus.append(time.process_time() - start_cpu)
            wall[name], cpu[name] = statistics.median(walls), statistics.median(cpus)
    base = cpu["frontend (log-mel)"]
    for name in cases:
        print(
            f"{name:42s} wall {wall[name] * 1e3:8.1f} ms  cpu {cpu[name] * 1e3:8.1f} ms  "
            f"{cpu[name] / base:5.2f}x frontend (cpu)"
        )
    return {name: {"wall_s": wall[name], "cpu_s": cpu[name]} for name in cases}
