"""`audiosweep train`: one trial on the current Ray cluster (a local one if none is running)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one trial (case + seed + hyper-parameters) with Ray Train",
        description="Train one trial. Overrides are dotted keys, e.g. model.conv=dcls_gauss train.seed=1.",
    )
    p.add_argument(
        "--preset", default="demo", help="preset name in search_spaces/presets or a YAML path"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides: section.key=value")
    p.add_argument("--name", help="run name (default: <preset>-<arch>-<conv>-s<seed>)")
    p.add_argument(
        "--run-root", help="folder holding run folders (default: the config's run_root, 'runs')"
    )
    p.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of the same name"
    )
    group.add_argument(
        "--overwrite", action="store_true", help="delete an existing run folder first"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow server (default: MLFLOW_TRACKING_URI or `make up`'s; none: not tracked)",
    )
    p.add_argument("--no-track", action="store_true", help="do not log this run to MLflow")
    p.set_defaults(func=_train)


def default_run_name(cfg) -> str:
    return f"{cfg.preset}-{cfg.model.arch}-{cfg.model.conv}-s{cfg.train.seed}"


def _train(args: argparse.Namespace) -> int:
    from audiosweep.config import load_preset
    from audiosweep.errors import UserError
    from audiosweep.storage import Folder, join, resolve_root
    from audiosweep.train.checks import check_on_driver

    cfg = load_preset(args.preset, args.overrides)
    name = args.name or default_run_name(cfg)
    run_root = resolve_root(args.run_root or cfg.run_root)
    run_dir = Folder(join(run_root, name))
    if run_dir.exists() and not run_dir.is_empty():
        if args.overwrite:
            run_dir.delete()
        elif not args.resume:
            raise UserError(
                f"run folder {run_dir} already exists; pass --resume to continue it "
                "or --overwrite to start again"
            )
    cfg = cfg.with_overrides({"name": name, "run_root": run_root})
    # Everything that can be wrong with the user's input fails here, before Ray starts.
    cfg = check_on_driver(cfg)
    uri = None
    if not args.no_track:
        from audiosweep import tracking

        uri = tracking.configured_uri(args.tracking_uri)
        if uri:
            tracking.check_server(uri)
        else:
            print("not tracked: no MLflow server configured (MLFLOW_TRACKING_URI or `make up`)")

    from audiosweep.ray_cluster import connect
    from audiosweep.train.trainer import run_trial

    connect(args.address)
    tracker = None
    if uri:
        from audiosweep.train.trial_run import TrialRun

        tracker = TrialRun.open_single(uri, cfg)
    result = run_trial(cfg, tracker=tracker)
    m = result.metrics
    print(json.dumps({k: m[k] for k in SUMMARY_KEYS if k in m}, indent=2))
    print(f"run folder: {result.run_dir}")
    if tracker:
        print(f"MLflow run: {tracker.url}")
    return 0


SUMMARY_KEYS = (
    "epoch",
    "eval_map",
    "best_map",
    "eval_dprime",
    "eval_accuracy",
    "eval_log_loss",
    "params_total",
    "train_samples_per_s",
    "macs_per_clip",
    "train_step_peak_bytes",
)
