"""Seeds as a group: one configuration of a search, trained with several seeds, judged by
their mean.

With ``sweep.seeds_per_config: N`` each Tune trial is one configuration the searcher proposed.
Inside the trial its N seeds train one after the other, each a child run of the group's own
MLflow run (role ``group``), which is a child of the sweep's run. When every seed has finished,
the group reads each seed's epoch curves back from MLflow, logs their mean and std per epoch
to the group run, closes it, and only then reports the mean curve to Tune, one result per
epoch. So the searcher (and ASHA) see one curve per configuration whose values are seed means,
and the last result, which the searcher keeps, holds the mean final mAP.

Why not in lock-step: the trainer runs a seed from start to end (its schedule depends on the
total epochs), so the seeds of a group cannot pause together at each epoch. The price is that
ASHA, which still ranks configurations by their mean curve, stops a configuration only after
all its seeds have run: early stopping then saves no training, it only decides which curves
Optuna sees truncated. Reading the curves from MLflow rather than from memory keeps a restarted
trial right: a seed that finished before the restart is not run again but still counts.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable
from typing import Any

from audiosweep import tracking

# The seed runs' summary metrics the group averages (besides the epoch curves).
SUMMARY_KEYS = (
    "final_map",
    "best_map",
    "final_map_tta",
    "params_total",
    "macs_per_clip",
    "train_step_peak_bytes",
    "train_samples_per_s",
    "wall_time_s",
)


def group_seeds(space_seeds: list[int], n: int) -> list[int]:
    """The seeds of every group: the space's seeds in order, then the integers after the
    largest, until there are `n` of them."""
    seeds = list(dict.fromkeys(space_seeds))[:n]
    nxt = max(seeds) + 1
    while len(seeds) < n:
        seeds.append(nxt)
        nxt += 1
    return seeds


def group_key(case: str, overrides: dict[str, Any], seeds: list[int]) -> str:
    """Stable id of a configuration's group (its overrides without the seed)."""
    shared = {k: v for k, v in overrides.items() if k != "train.seed"}
    digest = hashlib.sha1(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()
    return f"{case.replace('/', '-')}-g{'_'.join(map(str, seeds))}-{digest[:6]}"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_curves(curves: list[dict[int, dict[str, float]]]) -> list[dict[str, float]]:
    """Per epoch that every seed reported, the mean over seeds of each metric they all logged
    at it, with ``<metric>_std`` beside each evaluation score; sorted by epoch."""
    if not curves:
        return []
    rows = []
    for epoch in sorted(set.intersection(*(set(c) for c in curves))):
        keys = set.intersection(*(set(c[epoch]) for c in curves))
        row: dict[str, float] = {"epoch": epoch}
        for key in sorted(keys):
            mean, std = mean_std([c[epoch][key] for c in curves])
            row[key] = mean
            if key.startswith(("eval_", "val_")) or key == "best_map":
                row[f"{key}_std"] = std
        rows.append(row)
    return rows


def seed_curve(mlflow, run_id: str) -> dict[int, dict[str, float]]:
    """A seed run's epoch metrics as logged (epoch → metric → value); an epoch logged twice
    (a restarted trial) keeps its latest value."""
    keys = [
        k
        for k in mlflow.get_run(run_id).data.metrics
        if tracking.MLflowEpochCallback.is_epoch_metric(k)
    ]
    curve: dict[int, dict[str, float]] = {}
    for key in keys:
        for point in sorted(mlflow.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            curve.setdefault(int(point.step), {})[key] = point.value
    return curve


def seed_summary(mlflow, run_ids: list[str]) -> dict[str, float]:
    """Mean (and, for the mAPs, std) over seeds of each summary metric all seeds logged."""
    metrics = [mlflow.get_run(r).data.metrics for r in run_ids]
    out: dict[str, float] = {"seeds": len(run_ids)}
    for key in SUMMARY_KEYS:
        values = [m[key] for m in metrics if key in m and math.isfinite(m[key])]
        if len(values) == len(metrics):
            out[key], std = mean_std(values)
            if key.endswith("_map") or key.startswith("final_map"):
                out[f"{key}_std"] = std
    return out


def run_seed_group(config: dict[str, Any], context, *, run_one: Callable[..., Any]) -> None:
    """Train the configuration in `config` with each of ``config["seeds"]`` and report the
    seed means to Tune (see the module docstring). `run_one` trains one seed
    (`trainable.run_seed`)."""
    from ray import tune

    from audiosweep.sweep.objectives import THROUGHPUT_RATIO, throughput_vs_dsc
    from audiosweep.sweep.spaces import trial_overrides

    seeds = [int(s) for s in config["seeds"]]
    case, _, overrides, _ = trial_overrides(config)
    key = group_key(case, overrides, seeds)
    arch, conv = case.split("/")
    mlflow = tracking.client(context.tracking_uri)
    group, _ = tracking.child_run(
        mlflow,
        family=context.family,
        sweep_id=context.sweep_id,
        parent_id=context.parent_run_id,
        trial_key=key,
        tags={
            "arch": arch,
            "conv": conv,
            "case": case,
            "seeds": ",".join(map(str, seeds)),
            "preset": context.preset,
            "space": context.space,
            "git_commit": context.git_commit,
        },
        role="group",
    )
    group_id = group.info.run_id
    done_before = group.info.status == "FINISHED"  # a restarted trial: report, log nothing
    try:
        outcomes = [
            run_one({**config, "seed": s}, context, parent_id=group_id, report_to_tune=False)
            for s in seeds
        ]
    except Exception:
        mlflow.set_terminated(group_id, status="FAILED")
        raise
    run_ids = [o.run_id for o in outcomes]
    rows = mean_curves([seed_curve(mlflow, r) for r in run_ids])
    summary = seed_summary(mlflow, run_ids)
    if THROUGHPUT_RATIO in context.objectives:
        summary.update(throughput_vs_dsc(outcomes[0].cfg, outcomes[0].num_classes))
    if not done_before:
        params = {
            k: v for k, v in outcomes[0].cfg.flat().items() if k not in ("train.seed", "name")
        }
        tracking.log_params(mlflow, group_id, {**params, "sweep.group_seeds": seeds})
        for row in rows:
            tracking.log_metrics(mlflow, group_id, row, step=int(row["epoch"]))
        last = int(rows[-1]["epoch"]) if rows else 0
        tracking.log_metrics(mlflow, group_id, summary, step=last)
        mlflow.set_terminated(group_id, status="FINISHED")
    # Every result carries the summary (the seed-mean final mAP, the throughput objective):
    # the searcher keeps the last result it gets, whichever epoch that is.
    for row in rows or [{}]:
        tune.report({**summary, **row, "group_run_id": group_id})
