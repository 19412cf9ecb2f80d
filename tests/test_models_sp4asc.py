"""SP4ASC: report parameter counts, separable block in closed form, BN folding, fp16 export."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from DCLS.construct.modules import Dcls1d
from safetensors.torch import save_file
from torch import nn

from audiosweep.models.batchnorm_fold import fold_batchnorm, is_folded
from audiosweep.models.dcls_substitution import AxisDcls1d
from audiosweep.models.export import export_folded_fp16, load_folded_fp16
from audiosweep.models.sp4asc import (
    MelAffine,
    SeparableConv2d,
    report_parameter_count,
    sp4asc,
)

FP16_DATA_BYTES = 62_474 * 2  # the report's "122 KB"


def unique_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from their defaults (0, 1, 1, 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2.0 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model


def log_mel(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 3.0 - 2.0


def test_parameter_counts_match_report():
    model = sp4asc()
    # The report's 64,330 counts 4 values per BatchNorm channel (its section 2.2):
    # 62,922 learnable + 1,408 running means and variances (256 mel bins + 448 channels, x2).
    assert unique_parameters(model) == 62_922
    assert report_parameter_count(model) == 64_330
    folded = fold_batchnorm(model)
    assert unique_parameters(folded) == 62_474
    assert report_parameter_count(folded) == 62_474
    # Table 1, column "Param. (test)".
    per_layer = [unique_parameters(folded.mel_norm)]
    per_layer += [unique_parameters(block) for block in folded.blocks]
    per_layer += [unique_parameters(folded.head)]
    assert per_layer == [512, 512, 9088, 17280, 17280, 17802]
    assert isinstance(folded.mel_norm, MelAffine)


def test_separable_block_closed_form_on_delta():
    block = SeparableConv2d(1, 2)
    time_taps = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    freq_taps = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])
    with torch.no_grad():
        block.pointwise.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        block.time.weight.copy_(time_taps.view(2, 1, 1, 3))
        block.freq.weight.copy_(freq_taps.view(2, 1, 3, 1))
    x = torch.zeros(1, 1, 9, 9)  # (B, C, mel, time)
    x[0, 0, 4, 4] = 1.0
    y = block(x)[0]
    # Cross-correlation with taps at offsets -2, 0, +2: a delta at t=4 lands tap k at t=4-2(k-1).
    expected = torch.zeros(2, 9, 9)
    for c, g in enumerate([2.0, -1.0]):
        expected[c, 4, 6] = g * time_taps[c, 0]
        expected[c, 4, 2] = g * time_taps[c, 2]
        expected[c, 6, 4] = g * freq_taps[c, 0]
        expected[c, 2, 4] = g * freq_taps[c, 2]
        expected[c, 4, 4] = g * (time_taps[c, 1] + freq_taps[c, 1])
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_bilinear_dcls_block_at_integer_positions_equals_dilated_block():
    """Taps placed at -2, 0, +2 make the DCLS block the dilated 3-tap block (same delta case)."""
    dsc = SeparableConv2d(1, 2)
    dcls = SeparableConv2d(1, 2, conv="dcls_bilinear", dilated_kernel_size=7, kernel_count=3)
    taps = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with torch.no_grad():
        for block in (dsc, dcls):
            block.pointwise.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        dsc.time.weight.copy_(taps.view(2, 1, 1, 3))
        dsc.freq.weight.copy_(10 * taps.view(2, 1, 3, 1))
        dcls.time.weight.copy_(taps.view(2, 1, 3))
        dcls.freq.weight.copy_(10 * taps.view(2, 1, 3))
        for branch in (dcls.time, dcls.freq):
            branch.P.copy_(torch.tensor([-2.0, 0.0, 2.0]).expand_as(branch.P))
    x = torch.zeros(1, 1, 9, 11)
    x[0, 0, 4, 5] = 1.0
    torch.testing.assert_close(dcls(x), dsc(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("axis", [-1, -2])
def test_axis_dcls_equals_library_dcls1d_row_by_row(axis):
    torch.manual_seed(0)
    layer = AxisDcls1d(4, axis, dilated_kernel_size=7, kernel_count=3, version="gauss")
    reference = Dcls1d(4, 4, 3, padding=3, dilated_kernel_size=7, groups=4, bias=False)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 6, 10)  # (B, C, mel, time)
    y = layer(x)
    expected = torch.empty_like(x)
    for b in range(2):
        if axis == -1:
            for f in range(6):
                expected[b, :, f, :] = reference(x[b, :, f, :])
        else:
            for t in range(10):
                expected[b, :, :, t] = reference(x[b, :, :, t])
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("conv", ["dsc", "dcls_gauss", "dcls_bilinear"])
def test_folded_eval_output_equals_unfolded(conv):
    torch.manual_seed(0)
    model = randomize_batchnorms(sp4asc(conv=conv)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = log_mel(2, 1, 256, 48)
    with torch.no_grad():
        expected, got = model(x), folded(x)
        # The statistics matter: default ones give a different output.
        default_stats = sp4asc(conv=conv).eval()
        default_stats.load_state_dict(before)
        for m in default_stats.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        assert not torch.allclose(default_stats(x), expected, rtol=1e-3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert is_folded(folded) and not is_folded(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fp16_export_size_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorms(sp4asc()).eval()
    info = export_folded_fp16(model, tmp_path / "sp4asc.safetensors")
    assert info["parameters"] == 62_474
    assert info["bytes"] == (tmp_path / "sp4asc.safetensors").stat().st_size
    # 124,948 bytes of float16 data (122 KiB) plus a header of a few KiB; under DCASE's 128 KB.
    assert FP16_DATA_BYTES < info["bytes"] < FP16_DATA_BYTES + 4096
    assert info["bytes"] < 128 * 1024
    raw = (tmp_path / "sp4asc.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert json.loads(header["__metadata__"]["config"])["n_mels"] == 256
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}

    loaded = load_folded_fp16(info["path"])
    reference = fold_batchnorm(model).state_dict()
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, reference[name].half().float()), name
    x = log_mel(2, 1, 256, 64)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=2e-3 * expected.abs().max().item())


def test_fp16_export_round_trip_dcls(tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorms(sp4asc(conv="dcls_gauss", n_mels=128)).eval()
    info = export_folded_fp16(model, tmp_path / "dcls.safetensors")
    loaded = load_folded_fp16(info["path"])
    assert (
        unique_parameters(loaded) == info["parameters"] == unique_parameters(fold_batchnorm(model))
    )
    x = log_mel(2, 1, 128, 48)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=2e-3 * expected.abs().max().item())


def test_export_refuses_values_beyond_float16_and_writes_nothing(tmp_path):
    model = sp4asc()
    with torch.no_grad():
        model.head[1].weight[0, 0] = 1e6
    target = tmp_path / "too-big.safetensors"
    with pytest.raises(ValueError, match="head.1.weight"):
        export_folded_fp16(model, target)
    assert list(tmp_path.iterdir()) == []


def test_load_rejects_file_without_export_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3, dtype=torch.float16)}, str(path))
    with pytest.raises(ValueError, match="not an sp4asc"):
        load_folded_fp16(path)


@pytest.mark.parametrize("conv", ["dsc", "dcls_gauss", "dcls_bilinear"])
@pytest.mark.parametrize(
    ("shape", "num_classes"), [((2, 1, 256, 431), 10), ((2, 1, 128, 1001), 527)]
)
def test_output_shapes(conv, shape, num_classes):
    model = sp4asc(num_classes=num_classes, conv=conv, n_mels=shape[2]).eval()
    with torch.inference_mode():
        y = model(log_mel(*shape))
    assert y.shape == (shape[0], num_classes)
    assert torch.isfinite(y).all()


def test_dcls_positions_are_learned():
    model = sp4asc(conv="dcls_gauss", n_mels=32).train()
    model(log_mel(2, 1, 32, 32)).square().sum().backward()
    for branch in (model.blocks[1].conv.time, model.blocks[1].conv.freq):
        assert isinstance(branch, Dcls1d)
        assert branch.P.grad is not None and branch.P.grad.abs().sum() > 0
        assert branch.SIG.grad is not None and branch.SIG.grad.abs().sum() > 0


def test_bad_input_and_options_are_named():
    model = sp4asc()
    with pytest.raises(ValueError, match=r"\(B, 1, 256, frames\).*\(2, 256, 431\)"):
        model(torch.zeros(2, 256, 431))
    with pytest.raises(ValueError, match=r"\(2, 1, 128, 431\)"):
        model(torch.zeros(2, 1, 128, 431))
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(torch.zeros(2, 1, 256, 8))
    with pytest.raises(ValueError, match="conv must be one of"):
        sp4asc(conv="dcls_unknown")
    with pytest.raises(ValueError, match="dilated_kernel_size must be odd"):
        sp4asc(conv="dcls_gauss", dilated_kernel_size=6)
