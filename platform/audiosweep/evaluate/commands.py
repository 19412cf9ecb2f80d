"""`audiosweep evaluate`: a checkpoint on a dataset split, over the current Ray cluster; `audiosweep
tag`: a trained model on any recordings; `audiosweep export` (`evaluate.export`)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from audiosweep.evaluate.export import SOURCES, register_export

# Above this many files `tag` runs on Ray Data unless told otherwise: below it, starting a
# cluster costs more than it saves.
RAY_FROM_FILES = 200


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a dataset split (mAP, d', per-class AP), logged to MLflow",
        description=(
            "Evaluate a checkpoint: a trial's run folder or checkpoint_* folder, a state.pt, "
            "a .safetensors file, a reference checkpoint (--source), a URL of one, or an "
            "MLflow logged model (models:/<model_id>). The config is the run's own unless "
            "--preset is given; dotted overrides apply on top (e.g. data.path=...)."
        ),
    )
    p.add_argument("checkpoint", help="path, URL or models:/<model_id>")
    p.add_argument("overrides", nargs="*", help="dotted overrides: section.key=value")
    p.add_argument("--preset", help="preset name or YAML (default: the config logged with the run)")
    p.add_argument("--split", help="dataset split (default: data.eval_split)")
    p.add_argument(
        "--source",
        choices=SOURCES,
        help="layout of a reference checkpoint (default: ours, else detected from its keys)",
    )
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights of the checkpoint")
    p.add_argument("--sha256", help="expected sha256 of the checkpoint file")
    p.add_argument(
        "--tta", type=int, help="test-time augmentation views (default: augment.tta_views)"
    )
    p.add_argument(
        "--workers", type=int, help="model replicas (default: train.num_workers on GPUs, else 1)"
    )
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        help="CPUs per replica (default: train.cpus_per_worker, capped to fit a node)",
    )
    p.add_argument("--out", help="report folder (default: evaluations/<checkpoint>-<split>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument(
        "--save-scores", action="store_true", help="also write every clip's probabilities"
    )
    p.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow server (default: MLFLOW_TRACKING_URI or `make up`'s; none: not tracked)",
    )
    p.add_argument("--no-track", action="store_true", help="do not log this evaluation to MLflow")
    p.set_defaults(func=_evaluate)

    t = sub.add_parser(
        "tag",
        help="tag recordings (any format, rate, channels, length) with a trained model",
        description=(
            "Tag audio files (WAV, FLAC, OGG, MP3, ...; folders are searched) with a model: a run "
            "folder, a models:/<model_id> logged model, or a checkpoint (--source for a "
            "reference layout, with --preset and model.* overrides). Long recordings are cut "
            "into windows of the model's clip length every --hop seconds; a file's scores are "
            "the max (or --pool mean) over its windows."
        ),
    )
    t.add_argument("paths", nargs="+", help="audio files or folders (then dotted overrides)")
    t.add_argument("--model", required=True, help="run folder, models:/<id>, file or URL")
    t.add_argument("--source", choices=SOURCES, help="layout of a reference checkpoint")
    t.add_argument("--preset", help="preset name or YAML (default: the config of the run)")
    t.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights")
    t.add_argument("--top-k", type=int, default=5, help="labels printed per file (default 5)")
    t.add_argument(
        "--hop", type=float, help="seconds between windows (default: half the model's window)"
    )
    t.add_argument("--pool", choices=("max", "mean"), default="max", help="over a file's windows")
    t.add_argument("--out", help="per-window scores: a .csv (one row per window) or .json file")
    t.add_argument("--plot", help="timeline PNG of the top classes (one per file if several)")
    t.add_argument("--labels", help="label index CSV (index,mid,display_name) for the names")
    t.add_argument("--tracking-uri", help="MLflow server of a models:/ model")
    where = t.add_mutually_exclusive_group()
    where.add_argument(
        "--ray",
        action="store_true",
        help=f"tag on Ray Data, a pool of model replicas (default above {RAY_FROM_FILES} files)",
    )
    where.add_argument("--local", action="store_true", help="tag in this process, without Ray")
    t.add_argument("--workers", type=int, help="model replicas on Ray (default as `evaluate`)")
    t.add_argument("--address", help="Ray cluster (default: RAY_ADDRESS, else a local one)")
    t.set_defaults(func=_tag, overrides=[])

    register_export(sub)


def _evaluate(args: argparse.Namespace) -> int:
    from audiosweep import tracking
    from audiosweep.errors import UserError
    from audiosweep.evaluate.run import (
        EvalOptions,
        build_model,
        check_dataset,
        evaluate_split,
        resolve_eval_config,
        write_report,
    )
    from audiosweep.evaluate.source import open_checkpoint

    if args.tta is not None and args.tta < 0:
        raise UserError(f"--tta must be >= 0, not {args.tta}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, not {args.workers}")
    if args.cpus_per_worker is not None and args.cpus_per_worker <= 0:
        raise UserError(f"--cpus-per-worker must be > 0, not {args.cpus_per_worker}")
    uri = None if args.no_track else tracking.configured_uri(args.tracking_uri)
    if uri:
        tracking.check_server(uri)
    # A logged model comes from the tracking server, with or without --no-track.
    source_uri = (
        tracking.tracking_uri(args.tracking_uri) if args.checkpoint.startswith("models:/") else uri
    )
    checkpoint = open_checkpoint(
        args.checkpoint,
        source=args.source,
        ema=args.ema,
        sha256=args.sha256,
        tracking_uri=source_uri,
    )
    cfg = resolve_eval_config(checkpoint, args.preset, args.overrides)
    split = args.split or cfg.data.eval_split
    cfg, info = check_dataset(cfg, split)
    model = build_model(cfg, info.num_classes, checkpoint, args.ema)  # fails before Ray starts
    name = (
        f"{_label(args.checkpoint)}-{split}"
        + ("-ema" if args.ema else "")
        + (f"-tta{args.tta}" if args.tta else "")
    )
    out = Path(args.out or Path("evaluations") / name)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite or another --out")

    from audiosweep.ray_cluster import connect

    connect(args.address)
    options = EvalOptions(
        split=split,
        ema=args.ema,
        tta_views=args.tta,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
    )
    evaluation = evaluate_split(cfg, info, model, options)
    write_report(
        out, evaluation, checkpoint, cfg, overwrite=args.overwrite, save_scores=args.save_scores
    )
    summary = {
        k: evaluation.metrics.get(k)
        for k in ("eval_map", "eval_dprime", "eval_mean_dprime", "eval_mean_auc", "eval_clips")
    }
    summary["checkpoint_sha256"] = checkpoint.sha256
    print(json.dumps(summary, indent=2))
    print(f"report: {out}")
    if uri:
        from audiosweep.evaluate.tracking import log_evaluation

        run_id = log_evaluation(uri, evaluation, checkpoint, cfg, out, run_name=name)
        print(f"MLflow run: {run_id}")
    return 0


def _label(location: str) -> str:
    """A short folder-safe name for a checkpoint location."""
    if location.startswith("models:/"):
        text = location[len("models:/") :]
    else:
        path = Path(location.rstrip("/"))
        text = path.name if path.name not in ("", ".") else "checkpoint"
        if path.suffix in (".pt", ".pth", ".safetensors", ".bin"):
            text = path.stem
        if text.startswith("checkpoint_") and path.parent.name:
            text = f"{path.parent.name}-{text}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "checkpoint"


def _tag(args: argparse.Namespace) -> int:
    import sys

    from audiosweep.errors import UserError
    from audiosweep.evaluate import tag
    from audiosweep.evaluate.trained import load_trained

    # Dotted overrides follow the paths on the command line; argparse cannot tell them apart.
    overrides = [p for p in args.paths if "=" in p and not Path(p).exists()]
    paths = [p for p in args.paths if p not in overrides]
    if args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, not {args.top_k}")
    if args.hop is not None and args.hop <= 0:
        raise UserError(f"--hop must be > 0 seconds, not {args.hop}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, not {args.workers}")
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out {args.out}: name a .csv or .json file")
    files = tag.find_audio(paths)
    if not files:
        raise UserError(f"no audio files in {' '.join(paths)}")
    trained = load_trained(
        args.model,
        source=args.source,
        preset=args.preset,
        overrides=[*args.overrides, *overrides],
        ema=args.ema,
        labels=args.labels,
        tracking_uri=args.tracking_uri,
    )
    names = trained.class_names
    window_s = trained.cfg.clip_samples() / trained.cfg.audio.sample_rate
    hop = args.hop or window_s / 2
    on_ray = args.ray or (not args.local and len(files) > RAY_FROM_FILES)
    if on_ray:
        from audiosweep.evaluate.run import EvalOptions, replica_resources
        from audiosweep.ray_cluster import connect

        connect(args.address)
        workers, cpus, gpus = replica_resources(trained.cfg, EvalOptions(workers=args.workers))
        print(f"tagging {len(files)} files on Ray: {workers} replicas", file=sys.stderr)
        tagged = tag.tag_files_on_ray(
            trained.cfg,
            trained.model,
            names,
            files,
            hop=hop,
            pool=args.pool,
            workers=workers,
            cpus=cpus,
            gpus=gpus,
        )
    else:
        tagger = tag.Tagger.build(trained.cfg, trained.model, names)
        tagged = tag.tag_files(tagger, files, hop=hop, pool=args.pool)
    results, failed = [], 0
    for path, tags, why in tagged:
        if tags is None:
            failed += 1
            print(f"skipped {path}: {why}", file=sys.stderr)
            continue
        results.append(tags)
        top = ", ".join(f"{name} {p:.3f}" for name, p in tag.top_k(tags, names, args.top_k))
        print(
            f"{path} ({tags.seconds:.1f} s, {tags.sample_rate} Hz, "
            f"{len(tags.starts)} windows): {top}"
        )
    if args.out and results:
        tag.write_tags(Path(args.out), results, names, window_s)
        print(f"per-window scores: {args.out}")
    if args.plot and results:
        plot = Path(args.plot)
        for tags in results:
            out = (
                plot
                if len(results) == 1
                else plot.with_name(f"{plot.stem}-{Path(tags.path).stem}{plot.suffix or '.png'}")
            )
            tag.plot_timeline(out, tags, names, window_s, args.top_k)
            print(f"timeline: {out}")
    if failed:
        print(f"{failed} of {len(files)} files could not be read (above)", file=sys.stderr)
    return 1 if failed else 0
