"""Optimizer parameter groups: DCLS positions x5 lr without decay, no decay for 1-d tensors."""

from __future__ import annotations

import pytest
import torch

from audiosweep.models import count_parameters, create_model, param_groups
from audiosweep.models.dcls_fast import FastDcls2d


def test_groups_for_a_dcls_model() -> None:
    model = create_model("convnext_atto", "dcls_gauss")
    groups = param_groups(model, lr=1e-3, weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"dcls_positions", "no_decay", "decay"}

    layers = [m for m in model.modules() if isinstance(m, FastDcls2d)]
    shared = {id(t): t for layer in layers for t in (layer.P, layer.SIG)}
    assert len(shared) == 8  # P and SIG of 4 stages
    positions = by_name["dcls_positions"]
    assert {id(p) for p in positions["params"]} == set(shared)
    assert positions["lr"] == pytest.approx(5e-3) and positions["weight_decay"] == 0.0

    named = dict(model.named_parameters())
    no_decay_ids = {id(p) for p in by_name["no_decay"]["params"]}
    for name, param in named.items():
        if id(param) in shared:
            continue
        expect_no_decay = param.ndim == 1 or name.endswith(".bias")
        assert (id(param) in no_decay_ids) == expect_no_decay, name
    assert by_name["no_decay"]["weight_decay"] == 0.0 and by_name["no_decay"]["lr"] == 1e-3
    assert by_name["decay"]["weight_decay"] == 0.05 and by_name["decay"]["lr"] == 1e-3
    assert all(p.ndim > 1 for p in by_name["decay"]["params"])

    every = [id(p) for g in groups for p in g["params"]]
    assert len(every) == len(set(every))  # each (shared) tensor once
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(model)


def test_position_lr_scale_is_configurable_and_optimizer_accepts_groups() -> None:
    model = create_model("convnext_atto", "dcls_gauss")
    groups = param_groups(model, lr=2e-3, weight_decay=0.05, position_lr_scale=2.0)
    positions = next(g for g in groups if g["name"] == "dcls_positions")
    assert positions["lr"] == pytest.approx(4e-3)
    optimizer = torch.optim.AdamW(groups)
    before = positions["params"][0].detach().clone()
    model(torch.randn(1, 1, 32, 256)).sum().backward()
    optimizer.step()
    assert not torch.equal(positions["params"][0], before)


def test_dsc_model_has_no_position_group_and_frozen_parameters_are_left_out() -> None:
    model = create_model("fastvit_t8", "dsc")
    model.head.fc.weight.requires_grad_(False)
    groups = param_groups(model, lr=1e-3, weight_decay=0.05)
    assert [g["name"] for g in groups] == ["no_decay", "decay"]
    assert all(p is not model.head.fc.weight for g in groups for p in g["params"])
    with pytest.raises(ValueError, match="lr"):
        param_groups(model, lr=0.0, weight_decay=0.05)
