"""`audiosweep train`: one trial on the current Ray cluster (a local one if none is running)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
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
        "--run-root", help="folder holding run folders (default: train.run_root, 'runs')"
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
    p.set_defaults(func=_train)


def default_run_name(cfg) -> str:
    return f"{cfg.preset}-{cfg.model.arch}-{cfg.model.conv}-s{cfg.train.seed}"


def _train(args: argparse.Namespace) -> int:
    from audiosweep.config import ConfigError, load_preset, resolve_path

    try:
        cfg = load_preset(args.preset, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.name or default_run_name(cfg)
    run_root = resolve_path(args.run_root or cfg.run_root)
    run_dir = Path(run_root) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        if args.overwrite:
            shutil.rmtree(run_dir)
        elif not args.resume:
            print(
                f"error: run folder {run_dir} already exists; pass --resume to continue it "
                "or --overwrite to start again",
                file=sys.stderr,
            )
            return 2
    cfg = cfg.with_overrides({"name": name, "run_root": run_root})

    from audiosweep.ray_cluster import connect
    from audiosweep.train.trainer import run_trial

    connect(args.address)
    try:
        result = run_trial(cfg, run_root=run_root, name=name)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m = result.metrics
    print(
        json.dumps(
            {
                k: m.get(k)
                for k in (
                    "epoch",
                    "eval_map",
                    "best_map",
                    "eval_dprime",
                    "params_total",
                    "train_samples_per_s",
                    "infer_samples_per_s",
                )
            },
            indent=2,
        )
    )
    print(f"run folder: {result.run_dir}")
    return 0
