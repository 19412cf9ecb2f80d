"""model.init: checkpoints loaded as the paper did (audio stem and head fresh, DSC->DCLS), the
ImageNet table, the download cache and the load report. Local files only: no network."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from audiosweep.models import checkpoints, create_model, initialise_model, load_pretrained
from audiosweep.models.checkpoints import Checkpoint, fetch, imagenet_checkpoint
from audiosweep.models.pretrained import check_init
from checkpoint_layouts import fb_convnext_layout

ARCH = "convnext_atto"


def _model(conv: str = "dsc", seed: int = 1, **options) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(ARCH, conv, num_classes=5, **options).eval()


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def imagenet_file(tmp_path: Path) -> tuple[Path, nn.Module]:
    """An ImageNet-style ConvNeXt checkpoint in Facebook's layout: RGB stem, 1000 classes."""
    torch.manual_seed(0)
    vision = timm.create_model(ARCH, num_classes=1000).eval()
    path = tmp_path / "convnext_atto_1k.pth"
    torch.save({"model": fb_convnext_layout(vision)}, path)
    return path, vision


def test_imagenet_weights_load_around_a_fresh_audio_stem_and_head(imagenet_file) -> None:
    path, vision = imagenet_file
    model = _model()
    before = _copy(model)

    report = initialise_model(model, str(path), log=None)

    after, source = model.state_dict(), vision.state_dict()
    for key in ("stem.0.weight", "stem.0.bias", "head.fc.weight", "head.fc.bias"):
        assert torch.equal(after[key], before[key]), key
        assert key in report.reinitialised
    loaded = [k for k in after if k not in report.reinitialised]
    assert "stem.1.weight" in loaded and "head.norm.weight" in loaded
    for key in loaded:
        torch.testing.assert_close(after[key], source[key].reshape(after[key].shape), msg=key)
    assert sorted(report.loaded) == sorted(loaded)
    assert set(report.skipped) == {"downsample_layers.0.0.weight", "downsample_layers.0.0.bias",
                                   "head.weight", "head.bias"}  # fmt: skip
    assert report.source == "fb-convnext"
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"{len(loaded)} tensors loaded" in report.summary()


def test_a_dsc_checkpoint_initialises_dcls_layers_fresh_and_everything_else(tmp_path) -> None:
    dsc = _model("dsc", seed=0)
    path = tmp_path / "dsc.safetensors"
    save_file(dsc.state_dict(), str(path))
    model = _model("dcls_gauss")
    before = _copy(model)

    report = initialise_model(model, str(path), log=None)

    after = model.state_dict()
    assert report.source == "timm"
    dcls = [k for k in after if ".conv_dw." in k and not k.endswith(".bias")]
    assert dcls and set(dcls) == set(report.reinitialised)
    for key in dcls:
        assert torch.equal(after[key], before[key]), key
    for key, value in dsc.state_dict().items():
        if key not in report.reinitialised:
            assert torch.equal(after[key], value), key


def test_a_dcls_audio_checkpoint_restores_the_trained_model(tmp_path) -> None:
    trained = _model("dcls_gauss", seed=0)
    with torch.no_grad():  # positions away from their init, identical within each stage
        for parameter in {
            id(p): p for n, p in trained.named_parameters() if n.endswith("P")
        }.values():
            parameter.add_(torch.randn_like(parameter))
    path = tmp_path / "checkpoint-59.pth"
    torch.save(
        {
            "model": fb_convnext_layout(trained),
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 59,
            "scaler": {"scale": 1024.0},
            "args": argparse.Namespace(model="convnext_dcls_audio_tiny", lr=4e-3),
        },
        path,
    )
    model = _model("dcls_gauss")

    report = initialise_model(model, str(path), log=None)

    assert report.source == "dcls-audio" and not report.reinitialised and not report.skipped
    x = torch.randn(2, 1, 32, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)


def test_imagenet_init_downloads_the_table_entry_once_into_the_cache(
    imagenet_file, tmp_path, monkeypatch
) -> None:
    path, _ = imagenet_file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = Checkpoint(path.as_uri(), "fb-convnext", sha256=digest)
    monkeypatch.setitem(checkpoints.PAPER_IMAGENET, (ARCH, "dsc"), entry)
    monkeypatch.setenv("AUDIOSWEEP_CACHE", str(tmp_path / "cache"))

    report = initialise_model(_model(), "imagenet", log=None)

    cached = list((tmp_path / "cache" / "checkpoints").glob("*.pth"))
    assert len(cached) == 1 and cached[0].read_bytes() == path.read_bytes()
    assert report.checkpoint == path.as_uri() and report.sha256 == digest
    path.unlink()  # a second use reads the cache
    assert initialise_model(_model(), "imagenet", log=None).loaded == report.loaded


def test_a_download_with_the_wrong_sha256_fails(imagenet_file, tmp_path) -> None:
    path, _ = imagenet_file
    with pytest.raises(ValueError, match="sha256"):
        fetch(path.as_uri(), "0" * 64, cache=tmp_path / "cache")


def test_the_imagenet_table_follows_the_paper() -> None:
    fb = "https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224_ema.pth"
    assert imagenet_checkpoint("convnext_tiny", "dsc", 23, 26).url == fb
    assert "dcls_gauss" in imagenet_checkpoint("convnext_tiny", "dcls_gauss", 23, 26).url
    # Another kernel than the DCLS checkpoint's: start from the DSC one.
    assert imagenet_checkpoint("convnext_tiny", "dcls_gauss", 17, 34).url == fb
    assert imagenet_checkpoint("convnext_tiny", "dcls_bilinear", 23, 26).url == fb
    sail = imagenet_checkpoint("convformer_s18", "dcls_gauss", 23, 26)
    assert sail.url.endswith("convformer_s18.pth") and sail.source == "sail-metaformer"
    fastvit = imagenet_checkpoint("fastvit_sa24", "dsc", 23, 26)
    assert fastvit.source == "timm" and "fastvit_sa24.apple_in1k" in fastvit.url
    for arch in ("sp4asc", "convformer_atto"):
        with pytest.raises(ValueError, match=f"no ImageNet weights known for {arch}"):
            check_init("imagenet", arch, "dsc", 23, 26)
    with pytest.raises(FileNotFoundError):
        check_init("/nonexistent/weights.pth", ARCH, "dsc", 23, 26)


def test_a_tensor_of_another_shape_fails_naming_it() -> None:
    state = _model(seed=0).state_dict()
    state["stages.1.blocks.0.norm.weight"] = torch.ones(3)
    with pytest.raises(ValueError, match=r"'stages\.1\.blocks\.0\.norm\.weight' has shape \(3,\)"):
        load_pretrained(_model(), state, source="timm")


def test_a_missing_tensor_fails_naming_it() -> None:
    state = _model(seed=0).state_dict()
    del state["stages.2.blocks.1.gamma"]
    with pytest.raises(ValueError, match=r"no tensor for 'stages\.2\.blocks\.1\.gamma'"):
        load_pretrained(_model(), state, source="timm")


def test_positions_shared_in_the_model_must_agree_in_the_checkpoint() -> None:
    state = _model("dcls_gauss", seed=0).state_dict()
    state["stages.0.blocks.1.conv_dw.P"] = state["stages.0.blocks.1.conv_dw.P"] + 1.0
    with pytest.raises(ValueError, match="share one tensor"):
        load_pretrained(_model("dcls_gauss"), state, source="timm")
