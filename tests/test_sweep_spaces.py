"""Search spaces: parsing, the order in which overrides apply, variants and their keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from audiosweep.config import ConfigError, load_preset
from audiosweep.sweep.spaces import Case, Variant, load_space, space_path


def _space(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_grid_is_the_papers_18_trials() -> None:
    space = load_space("grid")
    variants = space.variants(load_preset("smoke"))
    assert len(variants) == 18
    assert {v.case for v in variants} == {
        f"{arch}/{conv}"
        for arch in ("convnext_tiny", "convformer_s18", "fastvit_sa24")
        for conv in ("dsc", "dcls_gauss")
    }
    assert sorted({v.seed for v in variants}) == [0, 1, 2]
    assert len({v.key for v in variants}) == 18


def test_overrides_apply_space_then_arch_then_case_then_stand_in(tmp_path: Path) -> None:
    path = _space(
        tmp_path,
        {
            "cases": [
                {"arch": "convnext_tiny", "conv": "dsc", "overrides": {"optim.lr": 0.3}},
                {"arch": "convformer_s18", "conv": "dsc"},
            ],
            "overrides": {"optim.lr": 0.1, "train.epochs": 2},
            "arch_overrides": {"convnext_tiny": {"optim.lr": 0.2, "optim.name": "sgd"}},
        },
    )
    space = load_space(str(path))
    arch_map = {"convnext_tiny": "convnext_micro"}
    first = space.case_overrides(space.cases[0], arch_map)
    assert first == {
        "optim.lr": 0.3,
        "train.epochs": 2,
        "optim.name": "sgd",
        "model.arch": "convnext_micro",
        "model.conv": "dsc",
    }
    second = space.case_overrides(space.cases[1], arch_map)
    assert second["optim.lr"] == 0.1 and second["model.arch"] == "convformer_s18"


def test_axes_are_crossed_with_cases_and_seeds(tmp_path: Path) -> None:
    path = _space(
        tmp_path,
        {
            "archs": ["convnext_tiny"],
            "convs": ["dsc", "dcls_gauss"],
            "seeds": [0, 1],
            "axes": {"optim.lr": [0.1, 0.2, 0.3]},
        },
    )
    variants = load_space(str(path)).variants(load_preset("smoke"))
    assert len(variants) == 2 * 3 * 2
    combos = {(v.case, v.overrides["optim.lr"], v.seed) for v in variants}
    assert len(combos) == 12
    assert all(v.overrides["train.seed"] == v.seed for v in variants)


def test_a_baseline_case_runs_once_per_seed_not_across_the_axes(tmp_path: Path) -> None:
    path = _space(
        tmp_path,
        {
            "cases": [
                {"arch": "convnext_tiny", "conv": "dsc", "baseline": True},
                {"arch": "convnext_tiny", "conv": "dcls_gauss"},
            ],
            "seeds": [0, 1],
            "axes": {"model.kernel_count": [9, 16, 26]},
        },
    )
    variants = load_space(str(path)).variants(load_preset("smoke"))
    dsc = [v for v in variants if v.case == "convnext_tiny/dsc"]
    dcls = [v for v in variants if v.case == "convnext_tiny/dcls_gauss"]
    assert [v.seed for v in dsc] == [0, 1]
    assert all("model.kernel_count" not in v.overrides for v in dsc)
    assert len(dcls) == 3 * 2


def test_variant_key_is_stable_and_depends_on_every_override() -> None:
    a = Variant("convnext_tiny/dsc", 0, {"optim.lr": 0.1, "train.seed": 0})
    same = Variant("convnext_tiny/dsc", 0, {"train.seed": 0, "optim.lr": 0.1})
    other = Variant("convnext_tiny/dsc", 0, {"optim.lr": 0.2, "train.seed": 0})
    assert a.key == same.key
    assert a.key != other.key
    assert a.key.startswith("convnext_tiny-dsc-s0-") and "/" not in a.key


def test_a_bad_override_key_fails_before_any_trial(tmp_path: Path) -> None:
    path = _space(tmp_path, {"archs": ["convnext_tiny"], "overrides": {"optim.lrr": 0.1}})
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_space(str(path)).variants(load_preset("smoke"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"archs": ["a"], "colour": 1}, "unknown keys"),
        ({"archs": ["a"], "kind": "random"}, "kind must be one of"),
        ({"archs": ["a"], "seeds": []}, "seeds must be a non-empty list"),
        ({"archs": ["a"], "axes": {"optim.lr": []}}, "axes.optim.lr must be a non-empty list"),
        ({"archs": ["a"], "params": {"optim.lr": {"type": "normal"}}}, "needs a type"),
        (
            {"archs": ["a"], "kind": "optuna", "axes": {"optim.lr": [1]}},
            "cannot also have grid axes",
        ),
        ({"archs": ["a"], "constraint": "fast"}, "constraint must be"),
        ({"archs": ["a"], "mode": "best"}, "mode must be max or min"),
        ({"cases": [{"arch": "a", "conv": "dsc"}], "archs": ["a"]}, "either cases or archs"),
        ({"cases": [{"arch": "a"}]}, "each case needs arch and conv"),
        ({"cases": [{"arch": "a", "conv": "dsc", "base": True}]}, r"unknown keys \['base'\]"),
        ({"cases": [{"arch": "a", "conv": "dsc", "baseline": "yes"}]}, "baseline must be true"),
        ({"convs": ["dsc"]}, "no cases"),
    ],
)
def test_malformed_space_names_the_file_and_the_problem(
    tmp_path: Path, data: dict, message: str
) -> None:
    path = _space(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as err:
        load_space(str(path))
    assert str(path) in str(err.value)


def test_unknown_space_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="known: .*grid"):
        space_path("gird")


def test_an_optuna_space_has_no_grid_variants() -> None:
    space = load_space("optuna_dcls")
    assert space.kind == "optuna" and space.params
    with pytest.raises(ConfigError, match="not a grid"):
        space.variants(load_preset("smoke"))


def test_case_name() -> None:
    assert Case("convnext_tiny", "dcls_gauss").name == "convnext_tiny/dcls_gauss"


def test_the_pareto_space_searches_two_objectives_without_early_stopping() -> None:
    space = load_space("optuna_pareto")
    assert space.multi_objective
    assert space.metrics == ["eval_map", "throughput_ratio_vs_dsc"]
    assert space.mode == ["max", "max"]
    assert space.scheduler["type"] == "none"
    assert space.sampler == "tpe"
    assert set(space.params) == {
        "model.dilated_kernel_size",
        "model.kernel_count",
        "optim.position_lr_scale",
    }
    single = load_space("optuna_dcls")
    assert not single.multi_objective and single.metrics == ["eval_map"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"metric": ["eval_map", "x"], "mode": "max"}, "equally long lists"),
        ({"metric": ["eval_map", "x"], "mode": ["max"]}, "equally long lists"),
        ({"metric": ["eval_map", "eval_map"], "mode": ["max", "max"]}, "distinct"),
        ({"metric": ["eval_map", "x"], "mode": ["max", "up"]}, "each mode must be max or min"),
        ({"metric": ["eval_map", "x"], "mode": ["max", "max"]}, "set scheduler: {type: none}"),
        ({"scheduler": {"type": "hyperband"}}, "scheduler.type must be asha or none"),
        ({"sampler": "cmaes"}, "sampler must be one of"),
    ],
)
def test_a_malformed_objective_names_the_problem_and_the_fix(
    tmp_path: Path, extra: dict, message: str
) -> None:
    data = {"kind": "optuna", "archs": ["convnext_tiny"], "params": {}, **extra}
    path = _space(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as err:
        load_space(str(path))
    assert str(path) in str(err.value)
