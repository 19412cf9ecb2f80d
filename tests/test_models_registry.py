"""Registry: the paper's parameter counts, output shapes of every case, audio adaptations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audiosweep.models import (
    CONV_TYPES,
    count_dcls_positions,
    count_parameters,
    create_model,
    dcls_positions,
    get_arch,
    list_archs,
)
from audiosweep.models.dcls_fast import FastDcls2d

BACKBONES = [
    "convnext_tiny",
    "convformer_s18",
    "fastvit_sa24",
    "convnext_atto",
    "convformer_atto",
    "fastvit_t8",
    "convnext_micro",
    "convformer_micro",
    "fastvit_micro",
]

# Issue 3 acceptance: 527 classes, 1-channel input; DCLS-Gauss 23x23 with 26 elements.
PAPER_COUNTS = {
    ("convnext_tiny", "dsc"): 28_223_855,
    ("convnext_tiny", "dcls_gauss"): 28_221_263,
    ("convformer_s18", "dsc"): 25_797_847,
    ("convformer_s18", "dcls_gauss"): 25_781_207,
    ("fastvit_sa24", "dsc"): 21_064_015,
    ("fastvit_sa24", "dcls_gauss"): 21_016_655,
}
# Channels of the depthwise 7x7 convs per stage (ConvFormer's are the 2x expanded ones).
DEPTHWISE_WIDTHS = {
    "convnext_tiny": (96, 192, 384, 768),
    "convformer_s18": (128, 256, 640, 1024),
    "fastvit_sa24": (64, 128, 256, 512),
}


@pytest.mark.parametrize(("arch", "conv"), list(PAPER_COUNTS))
def test_paper_parameter_counts(arch: str, conv: str) -> None:
    assert count_parameters(create_model(arch, conv)) == PAPER_COUNTS[(arch, conv)]


@pytest.mark.parametrize("arch", list(DEPTHWISE_WIDTHS))
def test_dcls_position_counts_are_one_shared_set_per_stage(arch: str) -> None:
    model = create_model(arch, "dcls_gauss")
    # P and SIG, 2 axes, 26 elements, per channel of each stage.
    assert count_dcls_positions(model) == 2 * 2 * 26 * sum(DEPTHWISE_WIDTHS[arch])
    positions = dcls_positions(model)
    assert list(positions) == [f"stages.{i}" for i in range(4)]
    assert positions.dilated_kernel_size == 23
    for width, grid in zip(DEPTHWISE_WIDTHS[arch], positions.values(), strict=True):
        assert grid.shape == (2, width, 26)
        assert grid.min() >= 0 and grid.max() <= 22


@pytest.mark.parametrize("conv", CONV_TYPES)
@pytest.mark.parametrize("arch", BACKBONES)
def test_every_case_maps_a_logmel_batch_to_logits(arch: str, conv: str) -> None:
    model = create_model(arch, conv).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 128, 1001))
    assert logits.shape == (2, 527)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbones_take_one_channel_through_the_2x16_audio_stem(arch: str) -> None:
    model = create_model(arch, "dsc")
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert (first.in_channels, first.kernel_size, first.stride) == (1, (2, 16), (2, 16))
    assert (first.bias is not None) == arch.startswith("convnext")
    if arch.startswith("fastvit"):
        assert model.stem is first  # the whole MobileOne stem is gone: no norm, no activation


def test_drop_path_rises_linearly_to_0_4_and_layer_scale_starts_at_1e_6() -> None:
    model = create_model("convnext_tiny", "dsc")
    rates = [
        block.drop_path.drop_prob if hasattr(block.drop_path, "drop_prob") else 0.0
        for stage in model.stages
        for block in stage.blocks
    ]
    assert rates == pytest.approx(torch.linspace(0, 0.4, 18).tolist())
    assert torch.all(model.stages[0].blocks[0].gamma == 1e-6)
    fastvit = create_model("fastvit_t8", "dsc", drop_path_rate=0.1)
    scales = [m.gamma for m in fastvit.modules() if type(m).__name__ == "LayerScale2d"]
    assert scales and all(torch.all(s == 1e-6) for s in scales)
    assert fastvit.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.1)


def test_fastvit_conditional_position_encoding_becomes_dcls_and_joins_its_stage() -> None:
    model = create_model("fastvit_sa24", "dcls_gauss")
    pos_enc = model.stages[3].pos_emb.pos_enc
    assert isinstance(pos_enc, FastDcls2d)
    assert pos_enc.P is model.stages[3].blocks[0].mlp.conv.conv.P
    assert pos_enc.bias is not None and torch.all(pos_enc.bias == 0)


@pytest.mark.parametrize("arch", ["convnext_atto", "convformer_atto", "fastvit_t8"])
def test_substitution_leaves_no_depthwise_7x7_and_inits_weights(arch: str) -> None:
    model = create_model(arch, "dcls_bilinear", kernel_count=10, dilated_kernel_size=13)
    assert not any(
        isinstance(m, nn.Conv2d)
        and m.groups == m.in_channels == m.out_channels
        and m.kernel_size == (7, 7)
        for m in model.modules()
    )
    layers = [m for m in model.modules() if isinstance(m, FastDcls2d)]
    assert layers
    for layer in layers:
        assert (
            layer.version == "v1"
            and layer.dilated_kernel_size == (13, 13)
            and layer.kernel_count == 10
        )
        assert layer.padding == (6, 6)
    weights = torch.cat([layer.weight.flatten() for layer in layers])
    assert weights.std().item() == pytest.approx(0.02, rel=0.1)
    stages = {id(layer.P) for layer in layers}
    assert len(stages) == 4


def test_list_archs_and_bad_requests() -> None:
    assert set(BACKBONES) | {"sp4asc"} <= set(list_archs())
    assert list_archs("convnext_*") == ["convnext_atto", "convnext_micro", "convnext_tiny"]
    assert get_arch("sp4asc").num_classes == 10
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        create_model("resnet50")
    with pytest.raises(ValueError, match="conv must be one of"):
        create_model("convnext_atto", "dcls_spline")
    with pytest.raises(ValueError, match="odd"):
        create_model("convnext_atto", "dcls_gauss", dilated_kernel_size=22)
    with pytest.raises(ValueError, match="impl"):
        create_model("convnext_atto", "dcls_gauss", dcls_impl="cuda")


def test_num_classes_and_sp4asc_defaults() -> None:
    assert create_model("convnext_atto", num_classes=10)(torch.randn(1, 1, 64, 256)).shape == (
        1,
        10,
    )
    sp4asc = create_model("sp4asc").eval()
    assert sp4asc(torch.randn(1, 1, sp4asc.n_mels, 64)).shape == (1, 10)
