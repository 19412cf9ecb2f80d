"""A sweep planned on the driver before Ray Tune starts: its trials (a grid's variants, with
those a constraint drops and why), every trial's config checked against its dataset and
model, and how many trials run at once on the cluster it can grow to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from audiosweep.capacity import (
    Capacity,
    TrialNeeds,
    cluster_capacity,
    default_worker_gpus,
    max_concurrent,
)
from audiosweep.config import ConfigError, TrialConfig, resolve_path
from audiosweep.data.schema import MANIFEST_NAME
from audiosweep.layout import RunLayout, SweepLayout
from audiosweep.sweep.spaces import SearchSpace, Variant

# Classes a dry run plans for when the dataset is not there yet (and no --num-classes): the
# label sets the presets are made for, AudioSet's 527 tags and the 10 scenes of TAU 2020.
PLANNING_CLASSES = {"multilabel": 527, "singlelabel": 10}


@dataclass
class SweepPlan:
    space: SearchSpace
    base: TrialConfig
    sweep_id: str
    layout: SweepLayout  # where its Tune state, trials and report go (a path or a URI)
    variants: list[Variant]  # grid only
    dropped: list[tuple[Variant, str]]  # grid variants removed by a constraint, with why
    num_classes: int = 0
    skipped: list[str] = field(default_factory=list)  # checks a dry run without data left out


def plan_sweep(
    space: SearchSpace,
    base: TrialConfig,
    sweep_id: str,
    run_root: str,
    *,
    dry_run: bool = False,
    num_classes: int | None = None,
) -> SweepPlan:
    """The sweep's trials, each checked on the driver (config, dataset, model) so that a
    mistake fails here in one line instead of in every trial on the cluster. A dry run also
    plans before the dataset exists: for `num_classes` classes (else the preset's task's
    usual label set), with the checks against the dataset listed as skipped."""
    has_data = Path(resolve_path(base.data.path), MANIFEST_NAME).is_file()
    skipped: list[str] = []
    if dry_run and not has_data:
        task = "multilabel" if base.data.task == "auto" else base.data.task
        num_classes = num_classes or PLANNING_CLASSES[task]
        skipped = [
            f"the dataset at {base.data.path} (data.path): its splits, sample rate and task",
            f"the clip length ({base.data.clip_seconds or 10.0:g} s assumed; the manifest's "
            "otherwise)",
        ]
    else:
        num_classes = None  # the dataset's

    variants: list[Variant] = []
    dropped: list[tuple[Variant, str]] = []
    if space.kind == "grid" and base.sweep.seeds_per_config > 1:
        raise ConfigError(
            f"sweep.seeds_per_config={base.sweep.seeds_per_config}: {space.name!r} is a grid, "
            "whose trials are its seeds already; list them in the space's seeds instead"
        )
    if space.kind == "grid":
        variants = space.variants(base)
        classes = check_configs([base.with_overrides(v.overrides) for v in variants], num_classes)
        if space.constraint == "params_le_dsc":
            variants, dropped = params_le_dsc(variants, base, list(space.axes), classes)
        if not variants:
            raise ConfigError(f"search space {space.name!r} leaves no trial to run")
    else:
        arch_map = dict(base.sweep.arch_map)
        classes = check_configs(
            [base.with_overrides(space.case_overrides(case, arch_map)) for case in space.cases],
            num_classes,
        )
    layout = RunLayout.at(run_root).sweep(sweep_id)
    return SweepPlan(space, base, sweep_id, layout, variants, dropped, classes, skipped)


def check_configs(configs: list[TrialConfig], num_classes: int | None = None) -> int:
    """Resolve every config against its dataset and build each distinct model once; returns the
    dataset's number of classes. With `num_classes` (a dry run before the dataset exists), only
    the config's values are checked and the models built for that many classes, on one clip of
    the configured (or AudioSet's) length."""
    from audiosweep.train.checks import check_model_builds, check_trial, resolve_trial

    built: set[str] = set()
    classes = num_classes or 0
    for cfg in configs:
        if num_classes is None:
            cfg, info = resolve_trial(cfg)
            classes = info.num_classes
        else:
            check_trial(cfg)
        key = repr((cfg.model, classes))
        if key not in built:
            check_model_builds(cfg, classes)
            built.add(key)
    return classes


def params_le_dsc(
    variants: list[Variant], base: TrialConfig, axis_keys: list[str], num_classes: int
) -> tuple[list[Variant], list[tuple[Variant, str]]]:
    """Keep the variants whose model has no more parameters than the same arch with DSC,
    counted on the case's own (paper-scale) arch, not the preset's stand-in
    (``sweep.arch_map``): a stand-in's stage of one block shares its DCLS positions with no
    other block, so a stand-in would drop combinations the paper-scale model keeps, and the
    demo would not run the ablation the paper preset runs."""
    import torch

    from audiosweep.models import count_parameters, create_model_from_config

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
            with torch.device("meta"):  # shapes only: no memory, no initialisation
                cache[key] = count_parameters(create_model_from_config(cfg, num_classes))
        return cache[key]

    kept, dropped = [], []
    for v in variants:
        arch = v.case.split("/")[0]
        cfg = base.with_overrides({**v.overrides, "model.arch": arch})
        dsc = params(cfg.with_overrides({"model.conv": "dsc"}))
        own = params(cfg)
        if own <= dsc:
            kept.append(v)
        else:
            values = " ".join(f"{k}={v.overrides[k]}" for k in axis_keys if k in v.overrides)
            dropped.append((v, f"{values}: {arch} has {own:,} parameters > DSC's {dsc:,}"))
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
