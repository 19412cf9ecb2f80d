"""``audiosweep prepare audioset|hf|hdf5|wds|demo|...``, ``audiosweep verify`` and ``audiosweep summary``."""

from __future__ import annotations

import argparse
import sys


def _common_output(p: argparse.ArgumentParser, *, labels: bool = True) -> None:
    p.add_argument("--out", required=True, help="dataset folder to write")
    if labels:
        p.add_argument(
            "--labels",
            default=None,
            help="label index CSV (index,mid,display_name); default: the packaged AudioSet 527-class index",
        )
    p.add_argument("--sample-rate", type=int, default=32000, help="dataset sample rate (Hz)")
    p.add_argument(
        "--clip-seconds", type=float, default=10.0, help="clip length readers pad/truncate to"
    )
    p.add_argument("--shard-mb", type=float, default=256, help="shard size bound (MB of audio)")
    p.add_argument("--overwrite", action="store_true", help="replace splits that already exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _val_options(p)


def _val_options(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument(
        "--val-fraction",
        type=float,
        required=required,
        default=None,
        help="carve this fraction of 'train' into a split 'val' (stratified over the labels) "
        "for model selection (data.val_split=val)",
    )
    p.add_argument(
        "--val-seed", type=int, default=0, help="seed of the validation split's choice (0)"
    )


def _carve(args: argparse.Namespace, dataset: str) -> None:
    """`--val-fraction`: carve the validation split from what was just written."""
    if args.val_fraction is None:
        return
    from .schema import DatasetInfo
    from .split import carve_validation, split_report

    entries = carve_validation(
        dataset,
        fraction=args.val_fraction,
        seed=args.val_seed,
        overwrite=getattr(args, "overwrite", False),
    )
    print(split_report(entries, DatasetInfo.load(dataset).class_names))


def _format_option(p: argparse.ArgumentParser, choices: list[str]) -> None:
    p.add_argument(
        "--format",
        default="flac",
        choices=choices,
        help="stored audio encoding (wav: larger files, faster to decode)",
    )


def _ingest_options(p: argparse.ArgumentParser, *, cluster: bool = True) -> None:
    _format_option(p, ["flac", "wav", "ogg"])
    p.add_argument("--workers", type=int, default=1, help="decoding processes (local ingest)")
    if not cluster:
        return
    p.add_argument(
        "--address",
        default=None,
        help="ingest on this Ray cluster ('auto' inside `ray job submit`): one task per shard "
        "on every node, resumable; --out must be a path every node sees",
    )
    p.add_argument(
        "--shard-clips",
        type=int,
        default=None,
        help="clips per shard with --address (default: about --shard-mb of 10 s FLAC clips)",
    )


def _ingest(args: argparse.Namespace, prepare, **source) -> int:
    """`prepare audioset|hf|scenes`: ingest ``source`` into --out, then print what was rejected
    and the dataset's summary."""
    from .ingest import rejection_summary
    from .summary import format_summary, summarize

    entries = prepare(args.out, **source, **_ingest_kwargs(args))
    print(rejection_summary(entries))
    _carve(args, args.out)
    print(format_summary(summarize(args.out)))
    return 0


def _output_kwargs(args: argparse.Namespace) -> dict:
    """The `_common_output` options, as keyword arguments of every `prepare` source."""
    return dict(
        sample_rate=args.sample_rate,
        clip_seconds=args.clip_seconds,
        shard_mb=args.shard_mb,
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
    )


def _ingest_kwargs(args: argparse.Namespace) -> dict:
    """The options the `prepare` ingests share, as ingest keyword arguments."""
    return dict(
        **_output_kwargs(args),
        audio_format=args.format,
        workers=args.workers,
        # Options only the sources that ingest on a cluster have (`_ingest_options`).
        **{k: getattr(args, k) for k in ("address", "shard_clips") if hasattr(args, k)},
    )


def _prepare_audioset(args: argparse.Namespace) -> int:
    from .ingest import resolve_labels
    from .ingest_audioset import prepare_audioset

    return _ingest(
        args,
        prepare_audioset,
        labels=resolve_labels(args.labels),
        audio_dir=args.audio_dir,
        segments=args.segments,
        eval_segments=args.eval_segments,
    )


def _prepare_hf(args: argparse.Namespace) -> int:
    from .ingest import resolve_labels
    from .ingest_hf import prepare_hf

    return _ingest(
        args, prepare_hf, labels=resolve_labels(args.labels), parquet=args.parquet, split=args.split
    )


def _split_files(args: argparse.Namespace) -> dict[str, list[str]]:
    splits = {"train": args.train}
    if args.eval:
        splits["eval"] = args.eval
    return splits


def _official(args: argparse.Namespace) -> dict[str, str]:
    lists = {"train": args.segments, "eval": args.eval_segments}
    return {split: csv for split, csv in lists.items() if csv}


def _prepare_hdf5(args: argparse.Namespace) -> int:
    from .ingest import resolve_labels
    from .ingest_hdf5 import prepare_hdf5

    return _ingest(
        args,
        prepare_hdf5,
        labels=resolve_labels(args.labels),
        splits=_split_files(args),
        layout=args.layout,
        official=_official(args),
    )


def _prepare_wds(args: argparse.Namespace) -> int:
    from .ingest import resolve_labels
    from .ingest_wds import prepare_wds

    return _ingest(
        args,
        prepare_wds,
        labels=resolve_labels(args.labels),
        splits=_split_files(args),
        official=_official(args),
    )


def _coverage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--segments",
        default=None,
        help="official segments CSV of split 'train': the manifest records which of its clips "
        "are present, missing and extra",
    )
    p.add_argument("--eval-segments", default=None, help="the same for split 'eval'")


def _summary(args: argparse.Namespace) -> int:
    from .summary import print_summary

    print_summary(args.dataset)
    return 0


def _prepare_demo(args: argparse.Namespace) -> int:
    from .demo import prepare_demo

    return _generate(args, prepare_demo)


def _generate(args: argparse.Namespace, make) -> int:
    """`prepare demo` / `prepare scene-demo`: generate the synthetic dataset, then summarise."""
    from .summary import print_summary

    make(
        args.out,
        train_clips=args.train_clips,
        eval_clips=args.eval_clips,
        seed=args.seed,
        audio_format=args.format,
        **_output_kwargs(args),
    )
    _carve(args, args.out)
    print_summary(args.out)
    return 0


def _prepare_scenes(args: argparse.Namespace) -> int:
    from .ingest_scenes import prepare_scenes

    splits = {"train": args.train}
    if args.eval:
        splits["eval"] = args.eval
    return _ingest(args, prepare_scenes, splits=splits, audio_root=args.audio_root)


def _prepare_scene_demo(args: argparse.Namespace) -> int:
    from .scene_demo import prepare_scene_demo

    return _generate(args, prepare_scene_demo)


def _split(args: argparse.Namespace) -> int:
    from .split import carve_validation, split_report
    from .summary import print_summary

    entries = carve_validation(
        args.dataset,
        fraction=args.val_fraction,
        seed=args.val_seed,
        source_split=args.source_split,
        val_split=args.name,
        overwrite=args.overwrite,
    )
    print(split_report(entries, print_summary(args.dataset)["class_names"]))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify

    report = verify(args.dataset, progress=False if args.no_progress else None)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not report.ok:
        for problem in report.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"verify failed: {len(report.problems)} problem(s) in {report.path}", file=sys.stderr)
        return 1
    print(
        f"ok: {report.rows} clips in {report.shards} shard(s) match the manifest of {report.path}"
    )
    return 0


def register(sub) -> None:
    prepare = sub.add_parser("prepare", help="build a dataset of Parquet audio shards")
    sources = prepare.add_subparsers(dest="source", required=True, metavar="SOURCE")

    p = sources.add_parser("audioset", help="audio folder + AudioSet segments CSV(s)")
    p.add_argument(
        "--audio-dir",
        required=True,
        help="folder holding <YTID>.<ext> files (searched recursively)",
    )
    p.add_argument("--segments", required=True, help="segments CSV -> split 'train'")
    p.add_argument("--eval-segments", default=None, help="segments CSV -> split 'eval'")
    _common_output(p)
    _ingest_options(p)
    p.set_defaults(func=_prepare_audioset)

    p = sources.add_parser(
        "hf", help="Parquet files laid out like the Hugging Face AudioSet dataset"
    )
    p.add_argument("--parquet", required=True, nargs="+", help="Parquet file glob(s) or folder(s)")
    p.add_argument("--split", required=True, help="split name to write (e.g. train, eval)")
    _common_output(p)
    _ingest_options(p)
    p.set_defaults(func=_prepare_hf)

    p = sources.add_parser(
        "hdf5", help="AudioSet HDF5 files as PANNs (waveform) or PaSST/EfficientAT (mp3) write them"
    )
    p.add_argument("--train", required=True, nargs="+", help="HDF5 file(s) or glob(s) -> 'train'")
    p.add_argument("--eval", default=None, nargs="+", help="HDF5 file(s) or glob(s) -> 'eval'")
    p.add_argument(
        "--layout",
        default=None,
        choices=["panns", "passt"],
        help="force the layout (default: detected from the datasets each file holds)",
    )
    _coverage_options(p)
    _common_output(p)
    _ingest_options(p)
    p.set_defaults(func=_prepare_hdf5)

    p = sources.add_parser("wds", help="webdataset tar shards (audio + json or cls per key)")
    p.add_argument("--train", required=True, nargs="+", help="tar shard glob(s) -> 'train'")
    p.add_argument("--eval", default=None, nargs="+", help="tar shard glob(s) -> 'eval'")
    _coverage_options(p)
    _common_output(p)
    _ingest_options(p)
    p.set_defaults(func=_prepare_wds)

    p = sources.add_parser("demo", help="the embedded synthetic demo dataset (10 classes)")
    p.add_argument("--train-clips", type=int, default=1000, help="clips in split 'train'")
    p.add_argument("--eval-clips", type=int, default=250, help="clips in split 'eval'")
    p.add_argument(
        "--seed", type=int, default=0, help="dataset seed (clip i uses [seed, split, i])"
    )
    _common_output(p, labels=False)
    _format_option(p, ["flac", "wav"])
    p.set_defaults(func=_prepare_demo)

    p = sources.add_parser(
        "scenes",
        help="single-label scene data: a folder per class or a TAU-style meta.csv per split",
    )
    p.add_argument(
        "--train",
        required=True,
        help="split 'train': a folder of class folders, or a CSV with filename and scene_label",
    )
    p.add_argument("--eval", default=None, help="split 'eval', in either form")
    p.add_argument(
        "--audio-root",
        default=None,
        help="folder CSV filenames are relative to (default: the CSV's)",
    )
    _common_output(p, labels=False)
    _ingest_options(p, cluster=False)  # scene folders are ingested on this machine
    p.set_defaults(func=_prepare_scenes, sample_rate=44100)

    p = sources.add_parser(
        "scene-demo", help="the embedded synthetic scene dataset (10 scenes, single-label)"
    )
    p.add_argument("--train-clips", type=int, default=400, help="clips in split 'train'")
    p.add_argument("--eval-clips", type=int, default=100, help="clips in split 'eval'")
    p.add_argument(
        "--seed", type=int, default=0, help="dataset seed (clip i uses [seed, split, i])"
    )
    _common_output(p, labels=False)
    _format_option(p, ["flac", "wav"])
    p.set_defaults(func=_prepare_scene_demo, sample_rate=16000, clip_seconds=4.0)

    p = sub.add_parser(
        "split", help="carve a stratified validation split from a dataset's train split"
    )
    p.add_argument("dataset", help="dataset folder")
    _val_options(p, required=True)
    p.add_argument("--from", dest="source_split", default="train", help="split to carve from")
    p.add_argument("--name", default="val", help="name of the new split (val)")
    p.add_argument("--overwrite", action="store_true", help="carve again over an existing one")
    p.set_defaults(func=_split)

    p = sub.add_parser("verify", help="check a dataset's shards against its manifest")
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_verify)

    p = sub.add_parser("summary", help="rows, bytes and per-class positives of a dataset")
    p.add_argument("dataset", help="dataset folder")
    p.set_defaults(func=_summary)
