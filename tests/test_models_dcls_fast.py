"""The fast DCLS layer against the `dcls` package's Dcls2d (the reference implementation)."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from DCLS.construct.modules import Dcls2d
from torch import nn

import audiosweep.models.dcls_fast as dcls_fast
from audiosweep.models.dcls_fast import FastDcls2d
from audiosweep.models.dcls_substitution import replace_depthwise_dcls

TOL = 1e-5


def rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def reference_layer(**kwargs) -> Dcls2d:
    logging.disable(logging.WARNING)  # dcls logs two CUDA notices per layer
    try:
        return Dcls2d(**kwargs, use_implicit_gemm=False)
    finally:
        logging.disable(logging.NOTSET)


def randomize_(layer: Dcls2d, seed: int) -> None:
    """Spread positions over the grid and vary sigmas, as after training."""
    g = torch.Generator().manual_seed(seed)
    lim = layer.dilated_kernel_size[0] // 2
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
        layer.P.copy_((torch.rand(layer.P.shape, generator=g) * 2 - 1) * lim)
        if layer.SIG is not None:
            layer.SIG.copy_(torch.rand(layer.SIG.shape, generator=g) * 2)
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))


GEOMETRIES = {
    # kernel larger than the map: the fast layer crops it
    "depthwise-cropped": dict(cin=8, cout=8, groups=8, size=(9, 7), dks=23, count=26),
    "depthwise-full": dict(cin=6, cout=6, groups=6, size=(30, 33), dks=9, count=5),
    "dense-groups1": dict(cin=3, cout=4, groups=1, size=(10, 11), dks=7, count=4),
}


@pytest.mark.parametrize("version", ["gauss", "v1", "max"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_fast_layer_matches_dcls_forward_and_all_gradients(version: str, geometry: str) -> None:
    g = GEOMETRIES[geometry]
    cin, cout, groups = g["cin"], g["cout"], g["groups"]
    kwargs = dict(
        in_channels=cin,
        out_channels=cout,
        kernel_count=g["count"],
        padding=g["dks"] // 2,
        dilated_kernel_size=g["dks"],
        groups=groups,
        version=version,
    )
    ref = reference_layer(**kwargs)
    randomize_(ref, seed=1)
    fast = FastDcls2d(**kwargs)
    fast.load_state_dict(ref.state_dict())

    x_ref = torch.randn(3, cin, *g["size"], requires_grad=True)
    x_fast = x_ref.detach().clone().requires_grad_()
    y_ref, y_fast = ref(x_ref), fast(x_fast)
    upstream = torch.randn_like(y_ref)
    (y_ref * upstream).sum().backward()
    (y_fast * upstream).sum().backward()

    assert y_fast.shape == y_ref.shape
    assert rel_diff(y_fast, y_ref) < TOL
    assert rel_diff(x_fast.grad, x_ref.grad) < TOL
    names = ["weight", "P", "bias"] + (["SIG"] if ref.SIG is not None else [])
    for name in names:
        assert rel_diff(getattr(fast, name).grad, getattr(ref, name).grad) < TOL, name


def _three_layer_stage(impl: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(*(nn.Conv2d(8, 8, 7, padding=3, groups=8) for _ in range(3)))
    return replace_depthwise_dcls(model, "gauss", dilated_kernel_size=11, kernel_count=6, impl=impl)


def test_stage_builds_its_interpolation_once_per_forward_and_matches_dcls(monkeypatch) -> None:
    fast, ref = _three_layer_stage("fast"), _three_layer_stage("reference")
    with torch.no_grad():
        ref[0].P.uniform_(-5, 5)
        ref[0].SIG.uniform_(0, 2)
    fast.load_state_dict(ref.state_dict())
    assert fast[0].P is fast[1].P is fast[2].P

    calls = []
    original = dcls_fast.axis_profiles
    monkeypatch.setattr(dcls_fast, "axis_profiles", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(2, 8, 12, 13)
    fast(x).square().sum().backward()
    assert len(calls) == 1
    fast(x)
    assert len(calls) == 2  # a new pass rebuilds (the previous graph is gone after backward)

    fast.zero_grad()
    y_fast = fast(x)
    y_ref = ref(x)
    y_fast.square().sum().backward()
    y_ref.square().sum().backward()
    assert rel_diff(y_fast, y_ref) < TOL
    for name in ("P", "SIG"):  # shared tensors: gradients accumulated over the three layers
        assert rel_diff(getattr(fast[0], name).grad, getattr(ref[0], name).grad) < TOL
    for i in range(3):
        assert rel_diff(fast[i].weight.grad, ref[i].weight.grad) < TOL


def test_eval_kernel_cache_is_reused_and_follows_parameter_changes(monkeypatch) -> None:
    kwargs = dict(
        in_channels=4, out_channels=4, kernel_count=5, padding=4, dilated_kernel_size=9, groups=4
    )
    ref = reference_layer(**kwargs)
    randomize_(ref, seed=2)
    fast = FastDcls2d(**kwargs)
    fast.load_state_dict(ref.state_dict())
    fast.eval()
    x = torch.randn(2, 4, 10, 10)

    builds = []
    original = dcls_fast.kernel_from_profiles
    monkeypatch.setattr(
        dcls_fast, "kernel_from_profiles", lambda *a, **k: builds.append(1) or original(*a, **k)
    )
    with torch.no_grad():
        first = fast(x)
        fast(x)
        assert len(builds) == 1

        # In-place updates (optimizer steps, load_state_dict) bump the version: rebuilt.
        for name, delta in (("weight", 0.5), ("P", 1.0), ("SIG", 0.3)):
            getattr(fast, name).add_(delta)
            getattr(ref, name).add_(delta)
            out = fast(x)
            assert not torch.allclose(out, first)
            assert rel_diff(out, ref(x)) < TOL, name
        assert len(builds) == 4

        # Writes through .data bypass version counters; train() drops the cache.
        before = fast(x)
        fast.weight.data.mul_(2.0)
        ref.weight.data.mul_(2.0)
        assert torch.equal(fast(x), before)
        fast.train()
        fast.eval()
        assert rel_diff(fast(x), ref(x)) < TOL

    # With gradients needed the cached (graph-less) kernel must not be used.
    fast(x).sum().backward()
    assert fast.weight.grad is not None and fast.P.grad is not None


def _cached_kernel(layer: FastDcls2d) -> torch.Tensor:
    key, (kernel, padding) = layer._kernel_cache
    return kernel


@pytest.mark.parametrize("stride", [1, 2])
def test_eval_kernel_drops_exact_zero_borders_and_keeps_outputs(stride: int) -> None:
    kwargs = dict(
        in_channels=6,
        out_channels=6,
        kernel_count=4,
        padding=11,
        dilated_kernel_size=23,
        groups=6,
        stride=stride,
    )
    ref = reference_layer(**kwargs)
    with torch.no_grad():  # positions near the centre, narrow Gaussians: zero far borders
        ref.P.uniform_(-1.5, 1.5)
        ref.SIG.zero_()
    fast = FastDcls2d(**kwargs)
    fast.load_state_dict(ref.state_dict())
    fast.eval()
    x = torch.randn(2, 6, 30, 28)
    with torch.no_grad():
        full_kernel = ref.DCK(ref.weight, ref.P, ref.SIG)  # dcls's own dense kernel
    support = full_kernel.ne(0).flatten(0, 1).any(0)
    assert not support[0].any() and not support[:, 0].any()  # the premise: exact-zero borders
    with torch.no_grad():
        y = fast(x)
    kernel = _cached_kernel(fast)
    assert kernel.shape[-1] < 23 and kernel.shape[-2] < 23
    assert y.shape == ref(x).shape
    assert rel_diff(y, ref(x)) < TOL

    # Positions spread over the grid (as after training): nothing is zero, nothing is dropped.
    randomize_(ref, seed=5)
    fast.load_state_dict(ref.state_dict())
    with torch.no_grad():
        y = fast(x)
    assert _cached_kernel(fast).shape[-2:] == (23, 23)
    assert rel_diff(y, ref(x)) < TOL


def test_training_kernel_on_cpu_drops_exact_zero_borders_and_keeps_all_gradients() -> None:
    kwargs = dict(
        in_channels=6, out_channels=6, kernel_count=4, padding=11, dilated_kernel_size=23, groups=6
    )
    ref = reference_layer(**kwargs)
    with torch.no_grad():  # positions near the centre, narrow Gaussians: zero far borders
        ref.P.uniform_(-1.5, 1.5)
        ref.SIG.fill_(0.05)  # not 0, where |SIG| has no gradient to compare
    fast = FastDcls2d(**kwargs)
    fast.load_state_dict(ref.state_dict())
    built = []
    original = dcls_fast.FastDcls2d._kernel

    def spy(self, *args):
        kernel, padding = original(self, *args)
        built.append((kernel, padding))
        return kernel, padding

    x_ref = torch.randn(2, 6, 30, 28, requires_grad=True)
    x_fast = x_ref.detach().clone().requires_grad_()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dcls_fast.FastDcls2d, "_kernel", spy)
        y_fast = fast(x_fast)
    y_ref = ref(x_ref)
    ((kernel, padding),) = built
    assert kernel.requires_grad and kernel.shape[-2] < 23 and kernel.shape[-1] < 23
    assert padding == ((kernel.shape[-2] - 1) // 2, (kernel.shape[-1] - 1) // 2)
    assert rel_diff(y_fast, y_ref) < TOL
    upstream = torch.randn_like(y_ref)
    (y_ref * upstream).sum().backward()
    (y_fast * upstream).sum().backward()
    assert rel_diff(x_fast.grad, x_ref.grad) < TOL
    for name in ["weight", "P", "SIG", "bias"]:
        assert rel_diff(getattr(fast, name).grad, getattr(ref, name).grad) < TOL, name


def test_all_zero_weights_keep_the_full_kernel() -> None:
    layer = FastDcls2d(4, 4, 3, padding=4, dilated_kernel_size=9, groups=4).eval()
    with torch.no_grad():
        layer.weight.zero_()
        y = layer(torch.randn(1, 4, 10, 10))
    assert _cached_kernel(layer).shape[-2:] == (9, 9)
    assert torch.equal(y, layer.bias.detach().view(1, 4, 1, 1).expand_as(y))


def test_training_model_can_be_deep_copied_and_gives_the_same_output() -> None:
    model = _three_layer_stage("fast")
    x = torch.randn(2, 8, 12, 13)
    model(x).sum()  # caches profiles that hold an autograd graph
    clone = copy.deepcopy(model)
    assert clone[0].P is clone[1].P and clone[0].P is not model[0].P
    assert clone[0].shared is clone[1].shared
    assert torch.equal(clone(x), model(x))


def test_depthwise_output_is_channels_last_on_cpu() -> None:
    layer = FastDcls2d(4, 4, 3, padding=3, dilated_kernel_size=7, groups=4)
    y = layer(torch.randn(1, 4, 8, 8))
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_fast_layer_rejects_versions_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="v0"):
        FastDcls2d(4, 4, 3, padding=3, dilated_kernel_size=7, groups=4, version="v0")


class _Checkpointed(nn.Module):
    """Each layer of a stage in its own activation checkpoint."""

    def __init__(self, stage: nn.Module, use_reentrant: bool) -> None:
        super().__init__()
        self.stage, self.use_reentrant = stage, use_reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.stage:
            x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=self.use_reentrant)
        return x


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activation_checkpointing_gives_the_same_gradients(use_reentrant: bool) -> None:
    plain, ref = _three_layer_stage("fast"), _three_layer_stage("reference")
    checkpointed = _Checkpointed(_three_layer_stage("fast"), use_reentrant)
    checkpointed.stage.load_state_dict(plain.state_dict())
    ref.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 12, 13, requires_grad=True)
    for model in (plain, checkpointed, ref):
        model(x).square().sum().backward()
    for name in ("P", "SIG", "weight"):
        expected = getattr(ref[0], name).grad
        assert rel_diff(getattr(checkpointed.stage[0], name).grad, expected) < TOL, name
        assert rel_diff(getattr(plain[0], name).grad, expected) < TOL, name


def _subnormal_count(t: torch.Tensor) -> int:
    t = t.detach().float() if t.dtype == torch.bfloat16 else t.detach()
    tiny = torch.finfo(t.dtype).tiny
    return int(((t != 0) & (t.abs() < tiny)).sum())


def _built_kernels(layer: FastDcls2d, x: torch.Tensor) -> list[torch.Tensor]:
    """Every kernel the layer passes to a convolution during one forward."""
    seen = []
    real_conv2d = dcls_fast.F.conv2d

    def spy(inp, weight, *args, **kwargs):
        seen.append(weight)
        return real_conv2d(inp, weight, *args, **kwargs)

    dcls_fast.F.conv2d = spy
    try:
        layer(x)
    finally:
        dcls_fast.F.conv2d = real_conv2d
    return seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("positions", ["initialised", "spread"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_built_kernels_hold_no_subnormals(dtype, positions, mode) -> None:
    torch.manual_seed(0)
    layer = FastDcls2d(32, 32, 26, padding=11, dilated_kernel_size=23, groups=32).to(dtype)
    if positions == "spread":
        randomize_(layer, seed=3)
    layer.train(mode == "train")
    # Without the flush, the float32 kernel of an initialised layer holds subnormals (what made
    # CPU convs slow); spread positions cover the grid and bfloat16 matmuls may round them away,
    # but the flush must hold either way.
    raw = dcls_fast.axis_profiles(layer.P, layer.SIG, "gauss", (23, 23))
    g_rows, g_cols, inv_norm = raw
    scale = layer.weight.reshape(-1, 26) * inv_norm
    unflushed = (g_rows * scale[..., None]).transpose(1, 2) @ g_cols
    if dtype == torch.float32 and positions == "initialised":
        assert _subnormal_count(unflushed) > 0
    x = torch.randn(2, 32, 24, 30, dtype=dtype)
    kernels = _built_kernels(layer, x)
    assert kernels, "the layer ran no convolution"
    assert all(_subnormal_count(k) == 0 for k in kernels)


def test_flushed_kernels_still_match_dcls_in_eval_and_train() -> None:
    torch.manual_seed(1)
    kwargs = dict(
        in_channels=16,
        out_channels=16,
        kernel_count=26,
        padding=11,
        dilated_kernel_size=23,
        groups=16,
    )
    fast = FastDcls2d(**kwargs)
    ref = reference_layer(**kwargs)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 16, 20, 40, requires_grad=True)
    y_ref = ref(x)
    y_fast = fast(x)
    assert rel_diff(y_fast, y_ref) < TOL
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [x, ref.weight, ref.P, ref.SIG])
    grads_fast = torch.autograd.grad(y_fast.square().sum(), [x, fast.weight, fast.P, fast.SIG])
    for gf, gr in zip(grads_fast, grads_ref, strict=True):
        assert rel_diff(gf, gr) < TOL
    fast.eval()
    ref.eval()
    with torch.no_grad():
        assert rel_diff(fast(x), ref(x)) < TOL


def test_eval_kernel_drops_only_taps_below_half_an_ulp_of_its_channel_peak() -> None:
    torch.manual_seed(2)
    kwargs = dict(
        in_channels=96, out_channels=96, kernel_count=26, padding=11, dilated_kernel_size=23
    )
    fast = FastDcls2d(**kwargs, groups=96).eval()
    ref = reference_layer(**kwargs, groups=96)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 96, 32, 40)
    with torch.no_grad():
        y = fast(x)
        dense = ref.DCK(ref.weight, ref.P, ref.SIG).squeeze(1)  # dcls's own (96, 23, 23) kernel
    kernel = _cached_kernel(fast).squeeze(1)
    h, w = kernel.shape[-2:]
    # Gaussians of sigma 0.5 around positions within ~2 of the centre: about 9x9 of 23x23.
    assert h <= 11 and w <= 11
    placed = torch.zeros_like(dense)
    placed[:, (23 - h) // 2 : (23 + h) // 2, (23 - w) // 2 : (23 + w) // 2] = kernel
    peak = dense.abs().amax((-2, -1), keepdim=True)
    dropped = (placed == 0) & (dense != 0)
    assert dropped.any()
    bound = peak * torch.finfo(torch.float32).eps / 2 * 1.001  # 0.1 %: dcls's own rounding
    assert (dense.abs()[dropped] < bound.expand_as(dense)[dropped]).all()
    kept = placed != 0
    assert rel_diff(placed[kept], dense[kept]) < 1e-6
    assert rel_diff(y, ref(x).detach()) < TOL

    # Kernels gradients flow through keep those taps (position and sigma gradients weigh the
    # Gaussian tails by (distance / sigma)^2): only subnormals go.
    fast.train()
    (train_kernel,) = _built_kernels(fast, x)
    assert train_kernel.requires_grad and train_kernel.shape[-1] > 11
