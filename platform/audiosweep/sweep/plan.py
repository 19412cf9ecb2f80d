"""A sweep planned on the driver before Ray Tune starts: its trials (a grid's variants, with
those a constraint drops and why), every trial's config checked against its dataset and
model, and how many trials run at once on the cluster it can grow to."""

from __future__ import annotations

import os
from dataclasses import dataclass

from audiosweep.capacity import (
    Capacity,
    TrialNeeds,
    cluster_capacity,
    default_worker_gpus,
    max_concurrent,
)
from audiosweep.config import ConfigError, TrialConfig
from audiosweep.layout import RunLayout, SweepLayout
from audiosweep.sweep.spaces import SearchSpace, Variant


@dataclass
class SweepPlan:
    space: SearchSpace
    base: TrialConfig
    sweep_id: str
    layout: SweepLayout  # where its Tune state, trials and report go (a path or a URI)
    variants: list[Variant]  # grid only
    dropped: list[tuple[Variant, str]]  # grid variants removed by a constraint, with why


def plan_sweep(space: SearchSpace, base: TrialConfig, sweep_id: str, run_root: str) -> SweepPlan:
    """The sweep's trials, each checked on the driver (config, dataset, model) so that a
    mistake fails here in one line instead of in every trial on the cluster."""
    variants: list[Variant] = []
    dropped: list[tuple[Variant, str]] = []
    if space.kind == "grid":
        variants = space.variants(base)
        check_configs([base.with_overrides(v.overrides) for v in variants])
        if space.constraint == "params_le_dsc":
            variants, dropped = _params_le_dsc(variants, base)
        if not variants:
            raise ConfigError(f"search space {space.name!r} leaves no trial to run")
    else:
        arch_map = dict(base.sweep.arch_map)
        check_configs(
            [base.with_overrides(space.case_overrides(case, arch_map)) for case in space.cases]
        )
    layout = RunLayout.at(run_root).sweep(sweep_id)
    return SweepPlan(space, base, sweep_id, layout, variants, dropped)


def check_configs(configs: list[TrialConfig]) -> None:
    """Resolve every config against its dataset and build each distinct model once."""
    from audiosweep.train.checks import check_model_builds, resolve_trial

    built: set[str] = set()
    for cfg in configs:
        cfg, info = resolve_trial(cfg)
        key = repr((cfg.model, info.num_classes))
        if key not in built:
            check_model_builds(cfg, info.num_classes)
            built.add(key)


def _params_le_dsc(variants: list[Variant], base: TrialConfig) -> tuple[list[Variant], list]:
    """Keep DCLS variants whose model has no more parameters than the same arch with DSC."""
    from audiosweep.data import DatasetInfo
    from audiosweep.models import count_parameters, create_model_from_config

    num_classes = DatasetInfo.load(base.data.path).num_classes
    cache: dict[tuple, int] = {}

    def params(cfg: TrialConfig) -> int:
        key = (
            cfg.model.arch,
            cfg.model.conv,
            cfg.model.dilated_kernel_size,
            cfg.model.kernel_count,
            cfg.audio.n_mels,  # SP4ASC's size follows it
        )
        if key not in cache:
            cache[key] = count_parameters(create_model_from_config(cfg, num_classes))
        return cache[key]

    kept, dropped = [], []
    for v in variants:
        cfg = base.with_overrides(v.overrides)
        dsc = params(cfg.with_overrides({"model.conv": "dsc"}))
        own = params(cfg)
        if own <= dsc:
            kept.append(v)
        else:
            dropped.append((v, f"{own:,} parameters > DSC's {dsc:,}"))
    return kept, dropped


def max_concurrent_trials(base: TrialConfig, capacity: Capacity) -> int:
    """As many trials as fit at once in what the cluster can grow to (capacity.py), or
    `sweep.max_concurrent_trials`; a trial that can never fit raises a one-line ConfigError."""
    explicit = base.sweep.max_concurrent_trials
    if explicit and not capacity.complete:
        return explicit  # only the nodes alive now are known: trust the user's number
    gpus = base.train.gpus_per_worker
    if gpus is None:
        gpus = default_worker_gpus(capacity.node_types)
    try:
        n = max_concurrent(capacity.node_types, TrialNeeds.of(base, gpus))
    except ConfigError as err:
        if capacity.complete:
            raise
        raise ConfigError(
            f"{err} (only the nodes alive now are visible: on an autoscaling cluster set "
            "sweep.max_concurrent_trials and train.gpus_per_worker)"
        ) from None
    return explicit or n


def planned_concurrency(base: TrialConfig, address: str | None) -> tuple[int, str]:
    """(trials at once, where that comes from) for a dry run: no cluster is started."""
    from audiosweep.capacity import Capacity, NodeType

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        from audiosweep.ray_cluster import connect

        connect(address)
        capacity = cluster_capacity()
    else:
        cpus = os.cpu_count() or 1
        local = NodeType("local", {"CPU": float(cpus)}, max_workers=1)
        capacity = Capacity([local], f"a local cluster of {cpus} CPUs")
    return max_concurrent_trials(base, capacity), capacity.source
