"""`audiosweep sweep` and `audiosweep report`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a search space (grid, ablation, Optuna) as Ray Tune trials tracked in MLflow",
        description="Run a sweep. Overrides apply to every trial, e.g. train.epochs=3.",
    )
    p.add_argument(
        "space",
        help="search space name in search_spaces/ (grid, ablation_kernel, ...) or a YAML path",
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides for every trial")
    p.add_argument("--preset", default="demo", help="smoke, demo, paper or a preset YAML path")
    p.add_argument(
        "--name", help="sweep id (default: <space>-<preset>-<timestamp>; with --resume: the latest)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="resume an interrupted sweep; finished trials are kept",
    )
    p.add_argument(
        "--run-root", help="folder for sweep state and trial checkpoints (default: train run_root)"
    )
    p.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)"
    )
    p.add_argument(
        "--tracking-uri", help="MLflow server (default: MLFLOW_TRACKING_URI or `make up`'s)"
    )
    p.add_argument(
        "--num-samples", type=int, help="Optuna spaces: number of trials (default: the space's)"
    )
    p.set_defaults(func=_sweep)

    r = sub.add_parser("report", help="rebuild a sweep's Table-1 style report from MLflow")
    r.add_argument("sweep_id", help="the sweep id (printed when the sweep starts)")
    r.add_argument("--family", help="MLflow experiment (default: found from the sweep id)")
    r.add_argument(
        "--out", help="folder for report.md/.csv/.png (default: runs/sweeps/<id>/report)"
    )
    r.add_argument("--tracking-uri")
    r.set_defaults(func=_report)


def _sweep_id(space: str, preset: str, name: str | None, resume: bool, run_root: Path) -> str:
    if name:
        return name
    prefix = f"{Path(space).stem}-{Path(preset).stem}-"
    if resume:
        existing = sorted((run_root / "sweeps").glob(prefix + "*"))
        if existing:
            return existing[-1].name
    return prefix + time.strftime("%Y%m%d-%H%M%S")


def _sweep(args: argparse.Namespace) -> int:
    from audiosweep.config import ConfigError, load_preset, resolve_path
    from audiosweep.sweep.spaces import load_space
    from audiosweep.sweep.tracking import TrackingError, tracking_uri

    try:
        base = load_preset(args.preset, args.overrides)
        space = load_space(args.space)
        if args.num_samples is not None:
            if args.num_samples < 1:
                raise ConfigError("--num-samples must be at least 1")
            space.num_samples = args.num_samples
        uri = tracking_uri(args.tracking_uri)
    except (ConfigError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_root = Path(resolve_path(args.run_root or base.run_root))
    sweep_id = _sweep_id(args.space, args.preset, args.name, args.resume, run_root)
    base = base.with_overrides(
        {"run_root": str(run_root), "data.path": resolve_path(base.data.path)}
    )

    from audiosweep.ray_cluster import connect
    from audiosweep.sweep.tuner import plan_sweep, run_sweep

    try:
        plan = plan_sweep(space, base, sweep_id, str(run_root))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if plan.sweep_dir.exists() and not args.resume and (plan.sweep_dir / "tune").exists():
        print(
            f"error: sweep {sweep_id} exists at {plan.sweep_dir}; pass --resume to continue it",
            file=sys.stderr,
        )
        return 2
    connect(args.address)
    try:
        rep = run_sweep(plan, tracking_uri=uri, resume=args.resume)
    except ConfigError as err:  # e.g. a trial that no node type can hold
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [t for t in rep["trials"] if t["status"] == "FAILED"]
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from audiosweep.sweep import report, tracking

    try:
        uri = tracking.tracking_uri(args.tracking_uri)
    except tracking.TrackingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mlflow = tracking.client(uri)
    family = args.family or _family_of(mlflow, args.sweep_id)
    if family is None:
        print(f"error: no sweep {args.sweep_id!r} in {uri}", file=sys.stderr)
        return 2
    rep = report.build_report(mlflow, family, args.sweep_id)
    parent = tracking.find_run(
        mlflow,
        mlflow.get_experiment_by_name(family).experiment_id,
        {tracking.SWEEP_TAG: args.sweep_id, tracking.ROLE_TAG: "sweep"},
    )
    out = Path(args.out or Path("runs") / "sweeps" / args.sweep_id / "report")
    paths = report.publish(mlflow, parent.info.run_id, rep, out)
    print(report.markdown(rep))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _family_of(mlflow, sweep_id: str) -> str | None:
    from audiosweep.sweep import tracking

    for exp in mlflow.search_experiments():
        if tracking.find_run(
            mlflow, exp.experiment_id, {tracking.SWEEP_TAG: sweep_id, tracking.ROLE_TAG: "sweep"}
        ):
            return exp.name
    return None
