"""Whole models: fast path vs the dcls package (same weights), state dicts both ways."""

from __future__ import annotations

import torch

from audiosweep.models import create_model

TOL = 1e-5


def rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def test_fast_and_dcls_package_models_agree_on_logits_and_every_gradient() -> None:
    torch.manual_seed(0)
    fast = create_model("convnext_atto", "dcls_gauss", dcls_impl="fast", drop_path_rate=0.0)
    ref = create_model("convnext_atto", "dcls_gauss", dcls_impl="reference", drop_path_rate=0.0)
    ref.load_state_dict(fast.state_dict())
    with torch.no_grad():  # spread positions over the grid, as after training
        for model in (fast, ref):
            for layer in {id(m.P): m for m in model.modules() if hasattr(m, "P")}.values():
                layer.P.copy_(torch.linspace(-11, 11, layer.P.numel()).reshape(layer.P.shape))
    x = torch.randn(2, 1, 64, 256)
    y_fast, y_ref = fast(x), ref(x)
    y_fast.square().sum().backward()
    y_ref.square().sum().backward()
    assert rel_diff(y_fast, y_ref) < TOL
    ref_params = dict(ref.named_parameters())
    for name, param in fast.named_parameters():
        assert rel_diff(param.grad, ref_params[name].grad) < TOL, name


def test_state_dicts_load_both_ways_and_keep_positions_shared() -> None:
    options = dict(dilated_kernel_size=13, kernel_count=8)
    fast = create_model("fastvit_t8", "dcls_gauss", dcls_impl="fast", **options).eval()
    ref = create_model("fastvit_t8", "dcls_gauss", dcls_impl="reference", **options).eval()
    fast_state, ref_state = fast.state_dict(), ref.state_dict()
    assert {k: v.shape for k, v in fast_state.items()} == {k: v.shape for k, v in ref_state.items()}

    x = torch.randn(1, 1, 32, 128)
    with torch.no_grad():
        fast(x)  # fills the eval kernel cache, which loading must invalidate
        fast.load_state_dict(ref_state)
        assert rel_diff(fast(x), ref(x)) < TOL
        other = create_model("fastvit_t8", "dcls_gauss", dcls_impl="reference", **options).eval()
        other.load_state_dict(fast.state_dict())
        assert rel_diff(other(x), fast(x)) < TOL
    stage = fast.stages[1].blocks
    assert stage[0].mlp.conv.conv.P is stage[1].mlp.conv.conv.P
