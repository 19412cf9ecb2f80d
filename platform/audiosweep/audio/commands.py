"""``audiosweep stats DATASET`` and ``audiosweep bench augment``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub, bench) -> None:
    stats = sub.add_parser(
        "stats",
        help="mean/std of the log-mel front end over a dataset split (for audio.mean/audio.std)",
    )
    stats.add_argument("dataset", type=Path, help="dataset folder (manifest.json, shards)")
    stats.add_argument("--split", default="train")
    stats.add_argument("--max-clips", type=int, default=None, help="use at most N clips")
    stats.add_argument("--batch-size", type=int, default=32)
    stats.add_argument(
        "--preset", default="paper", help="preset whose audio.* front end to use (default: paper)"
    )
    stats.add_argument("overrides", nargs="*", help="dotted overrides, e.g. audio.n_mels=64")
    stats.set_defaults(func=_stats)

    augment = bench.add_parser(
        "augment", help="time waveform augmentations and the mel front end side by side"
    )
    augment.add_argument("--batch", type=int, default=8)
    augment.add_argument("--seconds", type=float, default=10.0)
    augment.add_argument("--sample-rate", type=int, default=32_000)
    augment.add_argument("--repeats", type=int, default=5)
    augment.add_argument("--threads", type=int, default=None)
    augment.set_defaults(func=_bench_augment)


def format_stats(mean: float, std: float, clips: int, where: str) -> str:
    return (
        f"clips: {clips} ({where})\n"
        f"mean: {mean:.4f}\n"
        f"std: {std:.4f}\n"
        f"override: audio.mean={mean:.4f} audio.std={std:.4f}"
    )


def _stats(args: argparse.Namespace) -> int:
    from audiosweep.audio.stats import compute_stats
    from audiosweep.config import ConfigError, load_preset
    from audiosweep.data import DatasetInfo, iter_numpy_batches

    if args.max_clips is not None and args.max_clips < 1:
        raise ConfigError("--max-clips must be >= 1")
    cfg = load_preset(args.preset, args.overrides)
    info = DatasetInfo.load(args.dataset)
    if info.sample_rate != cfg.audio.sample_rate:
        raise ConfigError(
            f"{args.dataset} is sampled at {info.sample_rate} Hz but the preset's "
            f"audio.sample_rate is {cfg.audio.sample_rate}; pass audio.sample_rate={info.sample_rate}"
        )
    clip_seconds = cfg.data.clip_seconds or info.clip_seconds
    seen = 0

    def counted():
        nonlocal seen
        for batch in iter_numpy_batches(
            args.dataset, args.split, batch_size=args.batch_size, clip_seconds=clip_seconds
        ):
            seen += len(batch["waveform"])
            yield batch

    # compute_stats measures without normalisation, whatever mean/std the preset holds.
    mean, std = compute_stats(counted(), cfg.audio, max_clips=args.max_clips)
    clips = seen if args.max_clips is None else min(seen, args.max_clips)
    print(format_stats(mean, std, clips, f"{args.dataset} / {args.split}"))
    return 0


def _bench_augment(args: argparse.Namespace) -> int:
    import statistics
    import time

    import torch
    import torchaudio.functional as AF

    from audiosweep.audio.frontend import FrontEnd
    from audiosweep.audio.waveform import PadOrTruncate, RandomRoll, SpeedPerturbation
    from audiosweep.config import AudioConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    length = int(args.seconds * args.sample_rate)
    x = torch.randn(args.batch, length)
    frontend = FrontEnd(AudioConfig(sample_rate=args.sample_rate)).eval()
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
        f"input ({args.batch}, {length}) float32, threads={torch.get_num_threads()}, "
        f"median of {args.repeats} repeats; wall and process CPU time (CPU time is the steadier "
        "figure on a shared machine)"
    )
    wall, cpu = {}, {}
    with torch.no_grad():
        for name, fn in cases.items():
            fn()
            walls, cpus = [], []
            for _ in range(args.repeats):
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
    return 0
