"""`audiosweep sweep` and `audiosweep report`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
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
        "--run-root",
        help="folder for sweep state and trial checkpoints (default: the config's run_root, 'runs')",
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
    p.add_argument(
        "--worker-logs",
        action="store_true",
        help="stream every Ray worker's output here (default: a compact progress view)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials, dropped variants and concurrency; start nothing (plans "
        "before the dataset exists too)",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        help="--dry-run without the dataset: classes to plan for (default: AudioSet's 527, "
        "or 10 for a single-label preset)",
    )
    p.set_defaults(func=_sweep)

    r = sub.add_parser("report", help="rebuild a sweep's Table-1 style report from MLflow")
    r.add_argument("sweep_id", help="the sweep id (printed when the sweep starts)")
    r.add_argument("--family", help="MLflow experiment (default: found from the sweep id)")
    r.add_argument(
        "--out", help="folder for report.md/.csv/.png (default: <run root>/sweeps/<id>/report)"
    )
    r.add_argument("--run-root", help="the sweep's run root (default: the preset's, runs/)")
    r.add_argument(
        "--compare",
        metavar="SWEEP_ID",
        help="another sweep: say whether both were scored on the same dataset (fingerprint)",
    )
    r.add_argument("--tracking-uri")
    r.set_defaults(func=_report)


def _sweep_id(space: str, preset: str, name: str | None, resume: bool, run_root: str) -> str:
    from audiosweep.layout import RunLayout

    if name:
        return name
    prefix = f"{Path(space).stem}-{Path(preset).stem}-"
    if resume:
        existing = [s for s in RunLayout.at(run_root).sweep_ids() if s.startswith(prefix)]
        if existing:
            return existing[-1]
    return prefix + time.strftime("%Y%m%d-%H%M%S")


def _sweep(args: argparse.Namespace) -> int:
    from audiosweep.config import ConfigError, load_preset, resolve_path
    from audiosweep.errors import UserError
    from audiosweep.storage import Folder, resolve_root
    from audiosweep.sweep.plan import plan_sweep
    from audiosweep.sweep.spaces import load_space
    from audiosweep.tracking import tracking_uri
    from audiosweep.train.checks import JOB_COPY_MARK

    base = load_preset(args.preset, args.overrides)
    space = load_space(args.space)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise ConfigError("--num-samples must be at least 1")
        space.num_samples = args.num_samples
    run_root = resolve_root(args.run_root or base.run_root)
    if JOB_COPY_MARK in run_root:
        # Each node unpacks its own copy of a job's working directory, deleted with the job.
        raise ConfigError(
            f"run root {run_root} is inside this Ray job's copy of --working-dir, which other "
            'nodes cannot see and the job deletes: pass --run-root "$PWD/runs" (or a shared path)'
        )
    sweep_id = _sweep_id(args.space, args.preset, args.name, args.resume, run_root)
    base = base.with_overrides({"run_root": run_root, "data.path": resolve_path(base.data.path)})
    # Every user mistake fails here, before Ray starts: config, dataset, models, tracking.
    if args.num_classes is not None and args.num_classes < 1:
        raise ConfigError("--num-classes must be at least 1")
    plan = plan_sweep(
        space, base, sweep_id, run_root, dry_run=args.dry_run, num_classes=args.num_classes
    )
    if args.dry_run:
        print_plan(plan, args.address)
        return 0
    uri = tracking_uri(args.tracking_uri)
    if not args.resume and Folder(plan.layout.tune_dir).exists():
        raise UserError(
            f"sweep {sweep_id} exists at {plan.layout.dir}; pass --resume to continue it"
        )

    from audiosweep.ray_cluster import connect
    from audiosweep.sweep.tuner import run_sweep

    connect(args.address, worker_logs=args.worker_logs)
    rep = run_sweep(plan, tracking_uri=uri, resume=args.resume)
    failed = [t for t in rep["trials"] if t["status"] == "FAILED"]
    return 1 if failed else 0


def print_plan(plan, address: str | None) -> None:
    """What a sweep would run, without starting anything."""
    from audiosweep.config import ConfigError
    from audiosweep.sweep.plan import planned_concurrency

    space = plan.space
    trials = len(plan.variants) if space.kind == "grid" else space.num_samples
    try:
        concurrency, source = planned_concurrency(plan.base, address)
        at_once = f"up to {concurrency} at once ({source})"
    except ConfigError as err:  # a plan for a bigger cluster than this one: say so, go on
        at_once = f"none at once here: {err}"
    print(
        f"sweep {plan.sweep_id}: space {space.name} ({space.kind}), preset {plan.base.preset}, "
        f"{trials} trials, {at_once}"
    )
    if space.kind == "grid":
        for v in plan.variants:
            extra = " ".join(f"{k}={val}" for k, val in sorted(v.overrides.items()))
            print(f"  {v.case:32s} seed {v.seed}  {extra}")
        for v, why in plan.dropped:
            print(f"  dropped {v.case} seed {v.seed} {why}")
    else:
        n = plan.base.sweep.seeds_per_config
        if n > 1:
            from audiosweep.sweep.seed_group import group_seeds

            seeds = f"every configuration with seeds {group_seeds(space.seeds, n)} (their mean)"
        else:
            seeds = f"seeds: {space.seeds}"
        print(f"  cases: {', '.join(c.name for c in space.cases)}; {seeds}")
        print(f"  objectives: {', '.join(f'{m} ({d})' for m, d in _objectives(space))}")
        for key, spec in space.params.items():
            print(f"  {key}: {spec}")
    if plan.skipped:
        print(f"planned without the dataset, for {plan.num_classes} classes; not checked:")
        for what in plan.skipped:
            print(f"  - {what}")
    print(f"run folder: {plan.layout.dir}")


def _objectives(space) -> list[tuple[str, str]]:
    modes = space.mode if isinstance(space.mode, list) else [space.mode]
    return list(zip(space.metrics, modes, strict=True))


def _report(args: argparse.Namespace) -> int:
    from audiosweep import tracking
    from audiosweep.sweep import report

    uri = tracking.tracking_uri(args.tracking_uri)
    mlflow = tracking.client(uri)
    family = args.family or _family_of(mlflow, args.sweep_id)
    if family is None:
        from audiosweep.errors import UserError

        raise UserError(f"no sweep {args.sweep_id!r} in {uri}")
    rep = report.build_report(mlflow, family, args.sweep_id)
    parent = tracking.find_run(
        mlflow,
        mlflow.get_experiment_by_name(family).experiment_id,
        {tracking.SWEEP_TAG: args.sweep_id, tracking.ROLE_TAG: "sweep"},
    )
    out = args.out or _default_report_dir(args.run_root, args.sweep_id)
    paths = report.publish_to(mlflow, parent.info.run_id, rep, out)
    print(report.markdown(rep))
    print("written: " + ", ".join(paths))
    if args.compare:
        other_family = _family_of(mlflow, args.compare)
        if other_family is None:
            from audiosweep.errors import UserError

            raise UserError(f"no sweep {args.compare!r} in {uri} (--compare)")
        print(report.compare_datasets(rep, report.build_report(mlflow, other_family, args.compare)))
    return 0


def _default_report_dir(run_root: str | None, sweep_id: str) -> str:
    from audiosweep.config import TrialConfig
    from audiosweep.layout import RunLayout

    return RunLayout.at(run_root or TrialConfig().run_root).sweep(sweep_id).report_dir


def _family_of(mlflow, sweep_id: str) -> str | None:
    from audiosweep import tracking

    for exp in mlflow.search_experiments():
        if tracking.find_run(
            mlflow, exp.experiment_id, {tracking.SWEEP_TAG: sweep_id, tracking.ROLE_TAG: "sweep"}
        ):
            return exp.name
    return None
