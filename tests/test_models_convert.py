"""convert_state_dict: original checkpoint layouts -> our models, checked against timm's own
remapping (`checkpoint_filter_fn`) and by forward passes.

The original layouts are written from our (timm) models by tests/checkpoint_layouts.py.
"""

from __future__ import annotations

import argparse

import pytest
import timm.models.convnext
import timm.models.fastvit
import timm.models.metaformer
import torch
from torch import Tensor, nn

from audiosweep.models import convert_state_dict, create_model
from checkpoint_layouts import LAYOUTS, fb_convnext_layout

STAND_INS = {"convnext": "convnext_atto", "convformer": "convformer_atto", "fastvit": "fastvit_t8"}
FULL_SIZE = {"convnext": "convnext_tiny", "convformer": "convformer_s18", "fastvit": "fastvit_sa24"}
SOURCES = {"convnext": "fb-convnext", "convformer": "sail-metaformer", "fastvit": "apple-fastvit"}
TIMM_FILTERS = {
    "convnext": timm.models.convnext.checkpoint_filter_fn,
    "convformer": timm.models.metaformer.checkpoint_filter_fn,
    "fastvit": timm.models.fastvit.checkpoint_filter_fn,
}
NUM_CLASSES = 7


def _build(arch: str, conv: str, seed: int, **options) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, conv, num_classes=NUM_CLASSES, **options).eval()


def _assert_same_weights(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> None:
    assert sorted(ours) == sorted(theirs)
    for key, value in ours.items():
        assert torch.equal(value.flatten(), theirs[key].flatten()), key


@pytest.mark.parametrize("conv", ["dsc", "dcls_gauss"])
@pytest.mark.parametrize("family", list(STAND_INS))
def test_original_layouts_convert_like_timm_and_give_the_same_model(family: str, conv: str) -> None:
    arch = STAND_INS[family]
    reference = _build(arch, conv, seed=0)
    original = LAYOUTS[family](reference)
    # Really another layout (sail's `head.norm` is the MLP head's norm, timm's the final one).
    assert len(set(original) - set(reference.state_dict())) > len(original) // 2

    converted = convert_state_dict(original, arch=arch, conv=conv, source=SOURCES[family])

    _assert_same_weights(converted, TIMM_FILTERS[family](dict(original), reference))
    model = _build(arch, conv, seed=1)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in converted.items()} == shapes
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 1, 32, 128)
    with torch.no_grad():
        assert not torch.equal(_build(arch, conv, seed=1)(x), reference(x))
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize("family", list(FULL_SIZE))
def test_full_size_layouts_map_onto_every_key(family: str) -> None:
    arch = FULL_SIZE[family]
    with torch.device("meta"):  # keys and shapes only: no memory, no forward
        model = create_model(arch, "dcls_gauss", num_classes=NUM_CLASSES)
    original = LAYOUTS[family](model)
    converted = convert_state_dict(original, arch=arch, conv="dcls_gauss", source=SOURCES[family])
    expected = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in converted.items()} == expected
    theirs = TIMM_FILTERS[family](dict(original), model)
    assert {k: v.numel() for k, v in theirs.items()} == {k: v.numel() for k, v in converted.items()}


@pytest.mark.parametrize("family", list(STAND_INS))
def test_dcls_audio_checkpoints_pick_model_or_ema_weights(family: str) -> None:
    arch, conv = STAND_INS[family], "dcls_gauss"
    plain, averaged = _build(arch, conv, seed=0), _build(arch, conv, seed=1)
    checkpoint = {
        "model": LAYOUTS[family](plain),
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 59,
        "scaler": {},
        "args": argparse.Namespace(model=f"{family}_dcls_audio", drop_path=0.4),
        "model_ema": LAYOUTS[family](averaged),
    }
    for ema, expected in ((False, plain), (True, averaged)):
        converted = convert_state_dict(
            checkpoint, arch=arch, conv=conv, source="dcls-audio", ema=ema
        )
        _assert_same_weights(converted, expected.state_dict())

    del checkpoint["model_ema"]
    with pytest.raises(ValueError, match="no 'model_ema' entry"):
        convert_state_dict(checkpoint, arch=arch, conv=conv, source="dcls-audio", ema=True)
    with pytest.raises(ValueError, match="no 'model' entry"):
        convert_state_dict(checkpoint["model"], arch=arch, conv=conv, source="dcls-audio")


def test_timm_layout_is_ours() -> None:
    model = _build("convnext_atto", "dcls_gauss", seed=0)
    state = model.state_dict()
    converted = convert_state_dict(
        {"state_dict": state, "epoch": 3}, arch="convnext_atto", conv="dcls_gauss", source="timm"
    )
    _assert_same_weights(converted, state)


def test_imagenet_checkpoint_loses_its_vision_stem_and_keeps_its_head() -> None:
    torch.manual_seed(0)
    vision = timm.create_model("convnext_atto", num_classes=1000).eval()  # RGB 4x4 stem
    original = {"model": fb_convnext_layout(vision)}
    converted = convert_state_dict(original, arch="convnext_atto", conv="dsc", source="fb-convnext")
    theirs = timm.models.convnext.checkpoint_filter_fn(original, vision)
    # Only the stem conv goes: the reference code keeps the stem's LayerNorm.
    assert sorted(set(theirs) - set(converted)) == ["stem.0.bias", "stem.0.weight"]
    _assert_same_weights(converted, {k: v for k, v in theirs.items() if not k.startswith("stem.0")})
    assert converted["head.fc.weight"].shape == (1000, 320)


@pytest.mark.parametrize(
    ("family", "key"),
    [
        ("convnext", "stages.0.0.dwconv.weight_g"),
        ("convnext", "stages.9.0.gamma"),
        ("convformer", "stages.0.0.token_mixer.reparam.weight"),
        ("fastvit", "network.0.0.token_mixer.reparam_conv.weight"),
        ("fastvit", "dist_head.weight"),
    ],
)
def test_a_key_that_matches_nothing_fails_naming_it(family: str, key: str) -> None:
    arch = STAND_INS[family]
    original = LAYOUTS[family](_build(arch, "dsc", seed=0))
    original[key] = torch.zeros(3)
    with pytest.raises(ValueError) as error:
        convert_state_dict(original, arch=arch, conv="dsc", source=SOURCES[family])
    message = str(error.value)
    assert repr(key) in message and "\n" not in message


def test_a_layout_for_another_family_is_refused() -> None:
    original = fb_convnext_layout(_build("convnext_atto", "dsc", seed=0))
    with pytest.raises(ValueError, match="fb-convnext checkpoint cannot initialise fastvit_t8"):
        convert_state_dict(original, arch="fastvit_t8", conv="dsc", source="fb-convnext")
