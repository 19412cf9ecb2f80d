"""A sweep's plan: the parameter constraint of the kernel ablation, counted on the paper-scale
architecture, and the ablation's DSC baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiosweep.config import load_preset
from audiosweep.models import create_model
from audiosweep.sweep.plan import params_le_dsc, plan_sweep
from audiosweep.sweep.spaces import load_space

KERNEL_COUNTS = (9, 16, 26, 34, 49)


def _plan(preset: str, tmp_path: Path):
    """The whole dry-run plan (every model built and run once: only for the small presets)."""
    base = load_preset(preset).with_overrides({"data.path": str(tmp_path / "no_data")})
    return plan_sweep(
        load_space("ablation_kernel"), base, "t", str(tmp_path / "runs"), dry_run=True
    )


@pytest.fixture(scope="module")
def demo_plan(tmp_path_factory):
    return _plan("demo", tmp_path_factory.mktemp("plan"))


def _constrained(preset: str):
    """(kept, dropped) of the ablation's constraint alone, for 527 classes."""
    space = load_space("ablation_kernel")
    base = load_preset(preset)
    return params_le_dsc(space.variants(base), base, list(space.axes), 527)


def _combos(variants) -> set[tuple[str, int | None, int | None]]:
    return {
        (
            v.case,
            v.overrides.get("model.dilated_kernel_size"),
            v.overrides.get("model.kernel_count"),
        )
        for v in variants
    }


@pytest.fixture(scope="module")
def convnext_tiny_counts() -> dict[str, int]:
    """ConvNeXt-T's parameters with DSC and with DCLS of each kernel count, built on the CPU
    and counted tensor by tensor (the plan counts on the meta device)."""

    def count(conv: str, **kw) -> int:
        model = create_model("convnext_tiny", conv, num_classes=527, **kw)
        return sum(p.numel() for p in model.parameters())

    counts = {"dsc": count("dsc")}
    for n in KERNEL_COUNTS:
        counts[f"dcls{n}"] = count("dcls_gauss", dilated_kernel_size=23, kernel_count=n)
    return counts


def test_the_constraint_is_counted_on_the_paper_arch(tmp_path, convnext_tiny_counts) -> None:
    allowed = {
        n for n in KERNEL_COUNTS if convnext_tiny_counts[f"dcls{n}"] <= convnext_tiny_counts["dsc"]
    }
    assert allowed and allowed != set(KERNEL_COUNTS)  # the constraint decides something
    kept, dropped = _constrained("paper")
    kept_counts = {v.overrides["model.kernel_count"] for v in kept if "dcls" in v.case}
    assert kept_counts == allowed
    dropped_counts = {v.overrides["model.kernel_count"] for v, _ in dropped}
    assert dropped_counts == set(KERNEL_COUNTS) - allowed
    for v, why in dropped:
        n = v.overrides["model.kernel_count"]
        assert f"{convnext_tiny_counts[f'dcls{n}']:,} parameters > DSC's" in why
        assert f"{convnext_tiny_counts['dsc']:,}" in why


def test_presets_with_stand_ins_run_the_papers_combinations(demo_plan) -> None:
    paper_kept, paper_dropped = _constrained("paper")
    for preset in ("demo", "smoke"):
        assert load_preset(preset).sweep.arch_map["convnext_tiny"] != "convnext_tiny"  # stand-in
        kept, dropped = _constrained(preset)
        assert _combos(kept) == _combos(paper_kept)
        assert _combos(v for v, _ in dropped) == _combos(v for v, _ in paper_dropped)
    # And the whole plan of a stand-in preset keeps them too.
    assert _combos(demo_plan.variants) == _combos(paper_kept)


def test_the_kernel_ablation_runs_its_dsc_baseline_once_per_seed(demo_plan) -> None:
    plan = demo_plan
    space = plan.space
    baseline = [v for v in plan.variants if v.case == "convnext_tiny/dsc"]
    assert len(baseline) == len(space.seeds)
    assert all("model.kernel_count" not in v.overrides for v in baseline)
    assert plan.num_classes == 527 and plan.skipped  # planned without data, and says so


def test_a_grid_refuses_seeds_per_config_and_names_the_fix(tmp_path) -> None:
    from audiosweep.config import ConfigError

    base = load_preset("smoke", ["sweep.seeds_per_config=2"])
    base = base.with_overrides({"data.path": str(tmp_path / "no_data")})
    with pytest.raises(ConfigError, match=r"seeds_per_config=2: 'grid' is a grid.*seeds instead"):
        plan_sweep(load_space("grid"), base, "t", str(tmp_path / "runs"), dry_run=True)


def test_an_optuna_space_runs_each_configuration_with_the_group_seeds(tmp_path) -> None:
    from audiosweep.sweep.tuner import param_space

    base = load_preset("smoke", ["sweep.seeds_per_config=3"])
    base = base.with_overrides({"data.path": str(tmp_path / "no_data")})
    plan = plan_sweep(load_space("optuna_pareto"), base, "t", str(tmp_path / "runs"), dry_run=True)
    space = param_space(plan)
    assert space["seeds"] == [0, 1, 2] and "seed" not in space
    single = plan_sweep(
        load_space("optuna_pareto"), load_preset("smoke"), "t", str(tmp_path / "r"), dry_run=True
    )
    assert param_space(single)["seed"] == 0 and "seeds" not in param_space(single)


def test_a_two_objective_space_goes_to_optuna_alone_without_a_scheduler() -> None:
    from audiosweep.sweep.tuner import _tune_config

    base = load_preset("smoke")
    config = _tune_config(load_space("optuna_pareto"), base, concurrency=2)
    assert config.metric is None and config.mode is None and config.scheduler is None
    assert config.search_alg.metric == ["eval_map", "throughput_ratio_vs_dsc"]
    assert config.search_alg.mode == ["max", "max"]
    single = _tune_config(load_space("optuna_dcls"), base, concurrency=2)
    assert (single.metric, single.mode) == ("eval_map", "max")
    from ray.tune.schedulers import ASHAScheduler

    assert isinstance(single.scheduler, ASHAScheduler)
