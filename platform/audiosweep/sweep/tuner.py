"""Build and run a sweep: search space + preset → Ray Tune (grid or Optuna + ASHA) → MLflow."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from audiosweep.capacity import (
    TrialNeeds,
    cluster_capacity,
    default_worker_gpus,
)
from audiosweep.config import TrialConfig
from audiosweep.storage import Folder, is_uri, name_of
from audiosweep.sweep.plan import SweepPlan, max_concurrent_trials
from audiosweep.sweep.seed_group import group_seeds
from audiosweep.sweep.spaces import SearchSpace


def param_space(plan: SweepPlan) -> dict[str, Any]:
    from ray import tune

    space = plan.space
    if space.kind == "grid":
        return {"variant": tune.grid_search([asdict(v) for v in plan.variants])}
    arch_map = dict(plan.base.sweep.arch_map)
    # Tune flattens the space with "/" as its delimiter, so case names use ":" here.
    cases = {c.name.replace("/", ":"): space.case_overrides(c, arch_map) for c in space.cases}
    names = list(cases)
    out = {
        "cases": cases,
        "case": tune.choice(names) if len(names) > 1 else names[0],
        "params": {key: _distribution(spec) for key, spec in space.params.items()},
    }
    n = plan.base.sweep.seeds_per_config
    if n > 1:
        # The seed is no longer searched: every configuration runs with the same N seeds.
        out["seeds"] = group_seeds(space.seeds, n)
    else:
        out["seed"] = tune.choice(space.seeds) if len(space.seeds) > 1 else space.seeds[0]
    return out


def _distribution(spec: dict[str, Any]):
    from ray import tune

    kind = spec["type"]
    if kind == "choice":
        return tune.choice(spec["values"])
    if kind == "uniform":
        return tune.uniform(spec["low"], spec["high"])
    if kind == "loguniform":
        return tune.loguniform(spec["low"], spec["high"])
    if kind == "quniform":
        return tune.quniform(spec["low"], spec["high"], spec["q"])
    return tune.randint(spec["low"], spec["high"])


def run_sweep(
    plan: SweepPlan,
    *,
    tracking_uri: str,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the sweep; returns the report dict. Finished trials are never re-run."""
    from ray import tune

    from audiosweep import tracking
    from audiosweep.ray_cluster import cwd_kept, pin_data_actors_here
    from audiosweep.sweep import report
    from audiosweep.sweep.progress import SweepProgress
    from audiosweep.sweep.trainable import SweepContext, run_trial_in_tune
    from audiosweep.train.dataset_inputs import tag_dataset

    space, base = plan.space, plan.base
    # Read from what the cluster can grow to, before anything is logged: a trial that can
    # never fit fails here. The device is decided once, on the driver, for every trial.
    capacity = cluster_capacity()
    concurrency = max_concurrent_trials(base, capacity)
    pin_data_actors_here()
    if base.train.gpus_per_worker is None:
        gpus = default_worker_gpus(capacity.node_types)
        base = base.with_overrides({"train.gpus_per_worker": gpus})
    mlflow = tracking.client(tracking_uri)
    commit = tracking.git_commit()
    parent_id = tracking.parent_run(
        mlflow,
        space.family,
        plan.sweep_id,
        tags={"space": space.name, "preset": base.preset, "git_commit": commit},
    )
    tag_dataset(mlflow, parent_id, base.data.path)
    tracking.log_params(
        mlflow,
        parent_id,
        {
            "space": space.name,
            "kind": space.kind,
            "preset": base.preset,
            "trials": len(plan.variants),
            "seeds_per_config": base.sweep.seeds_per_config,
            "objectives": ",".join(space.metrics),
        },
    )
    context = SweepContext(
        sweep_id=plan.sweep_id,
        family=space.family,
        space=space.name,
        preset=base.preset,
        base=base.to_dict(),
        sweep_dir=plan.layout.dir,
        tracking_uri=tracking_uri,
        parent_run_id=parent_id,
        git_commit=commit,
        objectives=tuple(space.metrics),
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial_in_tune, context=context), trial_driver_resources(base)
    )
    Folder(plan.layout.dir).makedirs()
    storage = plan.layout.dir  # Tune's state goes to <storage>/tune: a path or a URI
    tune_dir = plan.layout.tune_dir
    print(
        f"[audiosweep] cluster capacity from {capacity.source}: "
        + ", ".join(f"{t.max_workers} x {t.name}" for t in capacity.node_types)
    )
    for note in capacity.notes:
        print(f"[audiosweep]   {note}")
    print(
        f"[audiosweep] sweep {plan.sweep_id}: space {space.name} ({space.kind}), preset {base.preset}, "
        f"{len(plan.variants) or space.num_samples} trials, up to {concurrency} at once"
    )
    for variant, why in plan.dropped:
        print(f"[audiosweep]   skipped {variant.key}: {why}")
    from audiosweep.ray_cluster import logs_dir

    print(f"[audiosweep] trial and worker logs: {logs_dir()}")
    total = len(plan.variants) or space.num_samples
    start = time.time()
    if resume and tune.Tuner.can_restore(tune_dir):
        print(f"[audiosweep] resuming from {tune_dir}")
        tuner = tune.Tuner.restore(tune_dir, trainable=trainable, resume_errored=True)
    else:
        if resume:
            print(f"[audiosweep] nothing to resume at {tune_dir}; starting the sweep")
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(plan),
            tune_config=_tune_config(space, base, concurrency),
            run_config=tune.RunConfig(
                name=name_of(tune_dir),
                storage_path=storage,
                # A trial whose driver actor was lost with its node is run again (it resumes
                # from its checkpoint); one that failed deterministically is not re-run (see
                # trainable.py).
                failure_config=tune.FailureConfig(max_failures=1),
                verbose=0,
                callbacks=[SweepProgress(total)] if progress else [],
            ),
        )
    # Tune's own console output (its experiment table, result tables) gives way to
    # SweepProgress; with the legacy reporter, verbose=0 prints nothing.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    _quiet_slow_step_warnings()
    with cwd_kept(local_cwd(storage)):
        results = tuner.fit()
    wall = time.time() - start
    _close_stopped_trials(mlflow, space.family, plan.sweep_id)
    errors = [r.error for r in results if r.error is not None]
    log_controlled_throughput(mlflow, parent_id, results, base, plan.num_classes)
    rep = report.build_report(mlflow, space.family, plan.sweep_id)
    report.publish_to(mlflow, parent_id, rep, plan.layout.report_dir)
    trial_time = sum(r.get("wall_time_s") or 0 for r in rep["trials"])
    tracking.log_metrics(
        mlflow,
        parent_id,
        {
            "sweep_wall_time_s": wall,
            "sum_trial_wall_time_s": trial_time,
            "trials_failed": len(errors),
        },
        step=0,
    )
    mlflow.set_terminated(parent_id, status="FAILED" if errors else "FINISHED")
    print(report.markdown(rep))
    print(f"[audiosweep] sweep wall time {wall:.0f}s; sum of trial wall times {trial_time:.0f}s")
    if errors:
        print(
            f"[audiosweep] {len(errors)} trial(s) failed; finished ones are kept. First error:\n{errors[0]}"
        )
    return rep


def log_controlled_throughput(
    mlflow, parent_id: str, results: Any, base: TrialConfig, num_classes: int
) -> None:
    """Measure every case's throughput side by side (`sweep/throughput.py`) and log it to the
    parent run. A failure here is reported, not raised: the trials' results stand without it,
    and the report then says it has no throughput."""
    from audiosweep import tracking
    from audiosweep.sweep import throughput

    started = time.time()
    try:
        measurement = throughput.measure_sweep(results, base, num_classes)
    except Exception as err:  # noqa: BLE001 - any failure leaves the report without throughput
        print(f"[audiosweep] controlled throughput measurement failed: {err!r}")
        return
    if measurement is None:
        return
    metrics, tags = throughput.to_run(measurement)
    tracking.log_metrics(mlflow, parent_id, metrics, step=0)
    for key, value in tags.items():
        mlflow.set_tag(parent_id, key, value)
    setup = measurement["setup"]
    print(
        f"[audiosweep] throughput of {len(measurement['cases'])} cases measured side by side on "
        f"{setup['device']} ({setup['threads']} threads), input {setup['input_shape']}, "
        f"{setup['repeats']} repeats, in {time.time() - started:.0f}s"
    )


def trial_driver_resources(base: TrialConfig) -> dict[str, float]:
    """What the Tune trial's own actor reserves. It only waits on its TorchTrainer, whose
    workers hold the real resources, so a token CPU fraction (Tune refuses an empty bundle);
    run in process, it is the worker as well."""
    # The bundle the capacity plan counted (`TrialNeeds`), in Tune's lower-case spelling.
    needs = TrialNeeds.of(base, base.train.gpus_per_worker or 0)
    bundle = needs.worker if base.train.in_process else {"CPU": needs.driver_cpus}
    return {key.lower(): value for key, value in bundle.items()}


# Tune warns whenever a step of its loop takes over 0.5 s (`TUNE_WARN_THRESHOLD_S`). With
# trials on every core the driver gets little CPU, and its steps (reading a result, saving the
# experiment state) pass that every few trials: warnings about the machine being busy, not
# about the sweep. Only steps this slow are reported, unless the user set the variable.
SLOW_STEP_WARN_S = 10.0


def _quiet_slow_step_warnings() -> None:
    from ray.tune.utils.util import warn_if_slow

    if "TUNE_WARN_THRESHOLD_S" not in os.environ:
        warn_if_slow.DEFAULT_THRESHOLD = SLOW_STEP_WARN_S


def local_cwd(storage: str) -> str:
    """The sweep driver's working directory: the sweep folder itself when it is local (Tune
    resolves paths against it, and it outlives the job's working_dir), else a fresh local
    folder."""
    if not is_uri(storage):
        return storage
    import tempfile

    return tempfile.mkdtemp(prefix="audiosweep-sweep-")


def _tune_config(space: SearchSpace, base: TrialConfig, concurrency: int):
    from ray import tune

    if space.kind == "grid":
        # A grid never stops a trial early, so a finished trial's driver actor can take the next
        # trial: that saves a Python process with torch, Ray Train and MLflow imported (seconds
        # of CPU per trial on a small machine). Each trial still gets its own Ray Train run.
        return tune.TuneConfig(
            max_concurrent_trials=concurrency, trial_name_creator=_trial_name, reuse_actors=True
        )
    from ray.tune.schedulers import ASHAScheduler

    sched = space.scheduler
    scheduler = None
    if sched.get("type", "asha") == "asha":
        # A restored trial restarts training_iteration, so ASHA counts the reported epoch.
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=base.train.epochs,
            grace_period=int(sched.get("grace_period", 1)),
            reduction_factor=float(sched.get("reduction_factor", 2)),
        )
    metric = selection_metric(space.metric, base.data.val_split)
    searcher = _searcher(space, base.train.seed, metric)
    # Several objectives go to the searcher alone: Tune's own metric/mode (for schedulers and
    # best-result lookups) take a single metric.
    single = {"metric": metric, "mode": space.mode}
    objective = {} if space.multi_objective else single
    return tune.TuneConfig(
        **objective,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=space.num_samples,
        max_concurrent_trials=concurrency,
        trial_name_creator=_trial_name,
    )


def _searcher(space: SearchSpace, seed: int, metric: str | list[str]):
    """Optuna over the space's params: TPE (one or several objectives) or NSGA-II; a
    multi-objective searcher is told its metrics and modes itself."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if space.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
    else:
        # What OptunaSearch builds by default; TPE searches several objectives as well.
        sampler = optuna.samplers.TPESampler(seed=seed)
    if space.multi_objective:
        return OptunaSearch(metric=metric, mode=space.mode, sampler=sampler)
    return OptunaSearch(sampler=sampler)


def selection_metric(metric: str | list[str], val_split: str | None) -> str | list[str]:
    """What ASHA and Optuna decide on: an ``eval_*`` metric read from the validation split
    (``val_*``) when the trials have one, so that no decision looks at the eval split."""
    if isinstance(metric, list):
        return [selection_metric(m, val_split) for m in metric]
    if val_split and metric.startswith("eval_"):
        return "val_" + metric.removeprefix("eval_")
    return metric


def _trial_name(trial) -> str:
    config = trial.config
    if "variant" in config:
        v = config["variant"]
        return f"{v['case'].replace('/', '-')}-s{v['seed']}-{trial.trial_id}"
    return f"{str(config.get('case', 'trial')).replace('/', '-')}-{trial.trial_id}"


def _close_stopped_trials(mlflow, family: str, sweep_id: str) -> None:
    """Trials that ASHA stopped (or that died) never close their MLflow run: close them here,
    keeping what they logged."""
    from audiosweep import tracking

    exp = mlflow.get_experiment_by_name(family)
    if exp is None:
        return
    runs = [
        run
        for role in ("trial", "group")  # a seed group's run is left open like its seeds'
        for run in mlflow.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{tracking.SWEEP_TAG}` = '{sweep_id}' and tags.`{tracking.ROLE_TAG}` = '{role}' "
            "and attributes.status = 'RUNNING'",
            max_results=1000,
        )
    ]
    for run in runs:
        mlflow.set_tag(run.info.run_id, "audiosweep.stopped_early", "true")
        mlflow.set_terminated(run.info.run_id, status="KILLED")
