"""``audiosweep stats DATASET``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
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
