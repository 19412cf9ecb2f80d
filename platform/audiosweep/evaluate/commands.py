"""`audiosweep evaluate`: a checkpoint on a dataset split, over the current Ray cluster."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


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
        choices=("dcls-audio", "fb-convnext", "timm", "sail-metaformer", "apple-fastvit"),
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
    name = f"{_label(args.checkpoint)}-{split}" + ("-ema" if args.ema else "")
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
