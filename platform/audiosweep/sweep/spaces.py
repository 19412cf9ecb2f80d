"""Search spaces: one YAML format for grids, ablations and Optuna searches.

A space names the MLflow experiment (``family``), the cases (``archs`` × ``convs``, or an explicit
``cases`` list where each case may carry its own overrides, and a ``baseline: true`` case runs
once per seed instead of across the axes), the seeds, overrides for every trial
or per arch, and either grid ``axes`` (dotted key → list of values, crossed) or Optuna ``params``
(dotted key → distribution). Combined with a preset and command-line overrides it yields
`Variant`s (grid) or a Tune param space (Optuna).

An Optuna space may search several objectives at once: ``metric`` and ``mode`` are then lists
of the same length (e.g. eval mAP and ``throughput_ratio_vs_dsc``, both maximised), and the
search reports a Pareto front instead of a best trial.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosweep.config import ConfigError, TrialConfig, load_yaml, search_spaces_dir

KINDS = ("grid", "optuna")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "quniform")
SPACE_KEYS = {
    "family",
    "description",
    "kind",
    "archs",
    "convs",
    "cases",
    "seeds",
    "overrides",
    "arch_overrides",
    "axes",
    "constraint",
    "params",
    "num_samples",
    "metric",
    "mode",
    "scheduler",
    "sampler",
}
SAMPLERS = ("tpe", "nsga2")


@dataclass(frozen=True)
class Case:
    arch: str
    conv: str
    overrides: tuple[tuple[str, Any], ...] = ()
    # A reference point (an ablation's DSC): one trial per seed, not crossed with the axes.
    baseline: bool = False

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.conv}"


@dataclass
class Variant:
    """One grid trial: a case, a seed and the overrides that make it."""

    case: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable, filesystem-safe id: the same variant always gets the same run name."""
        digest = hashlib.sha1(json.dumps(self.overrides, sort_keys=True, default=str).encode())
        return f"{self.case.replace('/', '-')}-s{self.seed}-{digest.hexdigest()[:6]}"


@dataclass
class SearchSpace:
    name: str
    family: str
    kind: str
    cases: list[Case]
    seeds: list[int]
    overrides: dict[str, Any]
    arch_overrides: dict[str, dict[str, Any]]
    axes: dict[str, list[Any]]
    constraint: str | None
    params: dict[str, dict[str, Any]]
    num_samples: int
    # One objective (a name and max/min) or, for a multi-objective search, lists of both.
    metric: str | list[str]
    mode: str | list[str]
    scheduler: dict[str, Any]
    description: str = ""
    sampler: str = "tpe"

    @property
    def metrics(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.metric, list)

    def case_overrides(self, case: Case, arch_map: dict[str, str]) -> dict[str, Any]:
        """Overrides that make a trial of `case`: space-wide, per arch, per case, then the
        preset's small-arch stand-in (the case keeps its paper name)."""
        out = dict(self.overrides)
        out.update(self.arch_overrides.get(case.arch, {}))
        out.update(dict(case.overrides))
        out["model.arch"] = arch_map.get(case.arch, case.arch)
        out["model.conv"] = case.conv
        return out

    def variants(self, base: TrialConfig) -> list[Variant]:
        """Every grid trial, validated against `base` (so a bad key fails before any work)."""
        if self.kind != "grid":
            raise ConfigError(f"search space {self.name!r} is {self.kind}, not a grid")
        arch_map = dict(base.sweep.arch_map)
        axis_keys = list(self.axes)
        out: list[Variant] = []
        for case in self.cases:
            keys = [] if case.baseline else axis_keys
            for values in itertools.product(*(self.axes[k] for k in keys)) if keys else [()]:
                for seed in self.seeds:
                    overrides = self.case_overrides(case, arch_map)
                    overrides.update(dict(zip(keys, values, strict=True)))
                    overrides["train.seed"] = seed
                    base.with_overrides(overrides)
                    out.append(Variant(case=case.name, seed=seed, overrides=overrides))
        return out


def trial_overrides(config: dict[str, Any]) -> tuple[str, int, dict[str, Any], str]:
    """(case, seed, overrides, key) from a grid variant or an Optuna sample (a seed group's
    sample, which holds ``seeds``, gives its first seed)."""
    if "variant" in config:
        v = config["variant"]
        variant = Variant(case=v["case"], seed=v["seed"], overrides=dict(v["overrides"]))
    else:  # Optuna: the case is a categorical parameter, searched params come dotted
        case_overrides = dict(config["cases"][config["case"]])
        case_overrides.update(config.get("params", {}))
        seed = config["seed"] if "seed" in config else config["seeds"][0]
        case_overrides["train.seed"] = seed
        case = config["case"].replace(":", "/")
        variant = Variant(case=case, seed=seed, overrides=case_overrides)
    return variant.case, variant.seed, variant.overrides, variant.key


def space_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"search space file {path} does not exist")
        return path
    path = search_spaces_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in search_spaces_dir().glob("*.yaml"))
        raise ConfigError(f"unknown search space {name_or_path!r} (known: {', '.join(known)})")
    return path


def load_space(name_or_path: str) -> SearchSpace:
    path = space_path(name_or_path)
    data = load_yaml(path)
    try:
        return _parse(path.stem, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def _parse(name: str, data: dict[str, Any]) -> SearchSpace:
    unknown = set(data) - SPACE_KEYS
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)} (valid: {', '.join(sorted(SPACE_KEYS))})"
        )
    kind = data.get("kind", "grid")
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, not {kind!r}")
    cases = _parse_cases(data)
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers, not {seeds!r}")
    axes = data.get("axes", {}) or {}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"axes.{key} must be a non-empty list")
    params = data.get("params", {}) or {}
    for key, spec in params.items():
        if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
            raise ConfigError(f"params.{key} needs a type in {DISTRIBUTIONS}, got {spec!r}")
    if kind == "optuna" and axes:
        raise ConfigError("an optuna space searches params; it cannot also have grid axes")
    constraint = data.get("constraint")
    if constraint not in (None, "params_le_dsc"):
        raise ConfigError(f"constraint must be params_le_dsc or absent, not {constraint!r}")
    metric, mode = _parse_objectives(data)
    scheduler = dict(data.get("scheduler", {}) or {})
    if scheduler.get("type", "asha") not in ("asha", "none"):
        raise ConfigError(f"scheduler.type must be asha or none, not {scheduler['type']!r}")
    if isinstance(metric, list) and scheduler.get("type", "asha") != "none":
        # ASHA ranks trials on one metric; a Pareto search has no single ranking to cut on.
        raise ConfigError(
            f"a search over several metrics {metric} cannot stop trials early: "
            "set scheduler: {type: none}"
        )
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, not {sampler!r}")
    return SearchSpace(
        name=name,
        family=str(data.get("family", name)),
        kind=kind,
        cases=cases,
        seeds=seeds,
        overrides=dict(data.get("overrides", {}) or {}),
        arch_overrides={k: dict(v) for k, v in (data.get("arch_overrides", {}) or {}).items()},
        axes=axes,
        constraint=constraint,
        params=params,
        num_samples=int(data.get("num_samples", 10)),
        metric=metric,
        mode=mode,
        scheduler=scheduler,
        description=str(data.get("description", "")),
        sampler=sampler,
    )


def _parse_objectives(data: dict[str, Any]) -> tuple[str | list[str], str | list[str]]:
    """(metric, mode): one name and max/min, or two equally long lists of them."""
    metric, mode = data.get("metric", "eval_map"), data.get("mode", "max")
    if isinstance(metric, list) or isinstance(mode, list):
        modes = mode if isinstance(mode, list) else None
        if (
            not isinstance(metric, list)
            or modes is None
            or len(metric) < 2
            or len(metric) != len(modes)
            or len(set(metric)) != len(metric)
        ):
            raise ConfigError(
                f"metric {metric!r} and mode {mode!r}: a multi-objective search needs two "
                "equally long lists of distinct metrics and their modes, e.g. "
                "metric: [eval_map, throughput_ratio_vs_dsc], mode: [max, max]"
            )
        bad = [m for m in modes if m not in ("max", "min")]
        if bad:
            raise ConfigError(f"each mode must be max or min, not {bad[0]!r}")
        return [str(m) for m in metric], list(modes)
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be max or min, not {mode!r}")
    return str(metric), mode


def _parse_cases(data: dict[str, Any]) -> list[Case]:
    if "cases" in data:
        if "archs" in data or "convs" in data:
            raise ConfigError("give either cases or archs × convs, not both")
        cases = []
        for item in data["cases"]:
            if not isinstance(item, dict) or not {"arch", "conv"} <= set(item):
                raise ConfigError(f"each case needs arch and conv, got {item!r}")
            extra = set(item) - {"arch", "conv", "overrides", "baseline"}
            if extra:
                raise ConfigError(
                    f"case {item!r}: unknown keys {sorted(extra)} (valid: arch, conv, overrides, "
                    "baseline)"
                )
            if not isinstance(item.get("baseline", False), bool):
                raise ConfigError(f"case {item!r}: baseline must be true or false")
            overrides = tuple(sorted((item.get("overrides") or {}).items()))
            cases.append(
                Case(item["arch"], item["conv"], overrides, bool(item.get("baseline", False)))
            )
        return cases
    archs, convs = data.get("archs"), data.get("convs", ["dsc"])
    if not archs:
        raise ConfigError("no cases: give archs (and convs) or a cases list")
    return [Case(a, c) for a in archs for c in convs]
