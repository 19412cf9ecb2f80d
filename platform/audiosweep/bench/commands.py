"""``audiosweep bench dcls|reader|shuffle|cold-start|ingest|augment``: every benchmark.

Each prints its report and, with ``--csv PATH``, writes its raw results there (one row per
variant, with the machine's facts; see `audiosweep.bench.results`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from audiosweep.config import DataConfig


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (ratios measured side by side)")
    bench = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    p = bench.add_parser("dcls", help="DSC vs DCLS (dcls package) vs DCLS (fast path) throughput")
    p.add_argument("--arch", default="convnext_tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--reference-repeats",
        type=int,
        default=1,
        help="repeats of the slow dcls-package variant (0 leaves it out)",
    )
    p.add_argument("--frames", type=int, default=1001)
    p.add_argument("--mels", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--modes", default="inference,train", help="comma-separated: inference,train")
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda[:N] (the paper measured on one V100)"
    )
    p.add_argument(
        "--dtypes",
        default="float32",
        help="comma-separated: float32,bfloat16,float16 (reduced ones under autocast)",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    _csv_argument(p)
    p.set_defaults(func=_dcls)

    p = bench.add_parser("reader", help="Ray Data reader vs a plain pyarrow+soundfile loop")
    _data_arguments(p, repeats=3)
    p.add_argument(
        "--synthetic-clips",
        type=int,
        default=0,
        help="first write a synthetic dataset of this many train clips to --data (kept and "
        "reused when it already holds as many)",
    )
    p.add_argument("--synthetic-seconds", type=float, default=10.0, help="synthetic clip length")
    p.add_argument(
        "--planned",
        action="store_true",
        help="read through the per-epoch plan (a new epoch each pass), as training does",
    )
    p.add_argument(
        "--mix-rows",
        type=int,
        default=DataConfig.mix_rows,
        help="with --planned: rows each read task mixes (data.mix_rows)",
    )
    p.add_argument("--clip-seconds", type=float, default=None, help="default: the manifest's")
    _csv_argument(p)
    p.set_defaults(func=_reader, read_cpus=DataConfig.read_cpus)

    p = bench.add_parser("shuffle", help="cost of per-epoch shuffling (plan, buffer) per pass")
    _data_arguments(p, repeats=5)
    p.add_argument("--sampling", default="uniform", choices=["uniform", "balanced"])
    p.add_argument("--shuffle-buffer", type=int, default=256, help="rows (0: none)")
    _csv_argument(p)
    p.set_defaults(func=_shuffle, read_cpus=1.0)

    p = bench.add_parser(
        "cold-start", help="first-second resource limits of a Ray Data pass, ours vs Ray's"
    )
    _data_arguments(p, repeats=None)
    p.add_argument("--passes", type=int, default=8, help="timed passes per variant")
    p.add_argument("--warmup", type=int, default=2)
    _csv_argument(p)
    p.set_defaults(func=_cold_start, read_cpus=1.0)

    p = bench.add_parser("ingest", help="ingest on a local process pool vs Ray tasks")
    p.add_argument("--input", required=True, type=Path, help="input folder (made once)")
    p.add_argument("--clips", type=int, default=300)
    p.add_argument("--address", default=None, help="Ray cluster to compare against")
    p.add_argument("--nodes", type=int, default=1, help="worker nodes to wait for")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shard-clips", type=int, default=16)
    p.add_argument("--out-root", type=Path, default=Path(tempfile.gettempdir()))
    _csv_argument(p)
    p.set_defaults(func=_ingest)

    p = bench.add_parser(
        "augment", help="time waveform augmentations and the mel front end side by side"
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sample-rate", type=int, default=32_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    _csv_argument(p)
    p.set_defaults(func=_augment)


def _csv_path(value: str) -> Path:
    """A `--csv` path whose folder can be written, checked before a long run rather than
    after it."""
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a folder")
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {folder}")
    return path


def _csv_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--csv",
        type=_csv_path,
        default=None,
        metavar="PATH",
        help="also write the raw results to this CSV file (one row per variant, with the "
        "machine's CPU, ISA, cores, torch and Ray versions and commit)",
    )


def _write_csv(args: argparse.Namespace, rows: list[dict]) -> None:
    if args.csv is not None:
        from audiosweep.bench.results import write_csv

        print(f"raw results: {write_csv(args.csv, rows)}")


def _data_arguments(p: argparse.ArgumentParser, repeats: int | None) -> None:
    """The options every benchmark over a dataset split shares."""
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="train")
    if repeats is not None:
        p.add_argument("--repeats", type=int, default=repeats, help="passes (median reported)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--read-cpus", type=float, help="CPU each Ray read/decode task reserves (data.read_cpus)"
    )
    p.add_argument(
        "--address", default=None, help="Ray address (default: RAY_ADDRESS or a local instance)"
    )


def _dcls(args: argparse.Namespace) -> int:
    from audiosweep.bench.dcls import csv_rows, run_dcls_bench

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    result = run_dcls_bench(
        arch=args.arch,
        batch=args.batch,
        repeats=args.repeats,
        reference_repeats=args.reference_repeats,
        n_mels=args.mels,
        frames=args.frames,
        threads=args.threads,
        modes=modes,
        device=args.device,
        dtypes=tuple(d.strip() for d in args.dtypes.split(",") if d.strip()),
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    _write_csv(args, csv_rows(result))
    return 0


def _reader(args: argparse.Namespace) -> int:
    from audiosweep.bench.reader import bench_reader, csv_rows, format_result

    if args.synthetic_clips:
        from audiosweep.data.synthetic import write_synthetic

        write_synthetic(args.data, clips=args.synthetic_clips, clip_seconds=args.synthetic_seconds)
    result = bench_reader(
        args.data,
        split=args.split,
        repeats=args.repeats,
        batch_size=args.batch_size,
        clip_seconds=args.clip_seconds,
        address=args.address,
        planned=args.planned,
        mix_rows=args.mix_rows,
        read_cpus=args.read_cpus,
    )
    print(format_result(result))
    _write_csv(args, csv_rows(result))
    return 0


def _shuffle(args: argparse.Namespace) -> int:
    from audiosweep.bench import ray_session
    from audiosweep.bench.shuffle import bench_shuffle, csv_rows, format_result

    with ray_session(args.address):
        result = bench_shuffle(
            args.data,
            split=args.split,
            repeats=args.repeats,
            batch_size=args.batch_size,
            sampling=args.sampling,
            read_cpus=args.read_cpus,
            shuffle_buffer=args.shuffle_buffer,
        )
    print(format_result(result))
    _write_csv(args, csv_rows(result))
    return 0


def _cold_start(args: argparse.Namespace) -> int:
    from audiosweep.bench import ray_session
    from audiosweep.bench.cold_start import bench_cold_start, csv_rows, format_result

    with ray_session(args.address):
        result = bench_cold_start(
            args.data,
            split=args.split,
            passes=args.passes,
            warmup=args.warmup,
            batch_size=args.batch_size,
            read_cpus=args.read_cpus,
        )
    print(format_result(result))
    _write_csv(args, csv_rows(result))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from audiosweep.bench.ingest import bench_ingest, csv_rows, format_result

    result = bench_ingest(
        args.input,
        clips=args.clips,
        address=args.address,
        nodes=args.nodes,
        workers=args.workers,
        repeats=args.repeats,
        shard_clips=args.shard_clips,
        out_root=args.out_root,
    )
    print(format_result(result))
    _write_csv(args, csv_rows(result))
    return 0


def _augment(args: argparse.Namespace) -> int:
    from audiosweep.bench.augment import csv_rows, run_augment_bench

    result = run_augment_bench(
        batch=args.batch,
        seconds=args.seconds,
        sample_rate=args.sample_rate,
        repeats=args.repeats,
        threads=args.threads,
    )
    _write_csv(args, csv_rows(result))
    return 0
