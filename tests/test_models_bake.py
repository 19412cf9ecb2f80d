"""DCLS layers baked into plain depthwise convolutions: the same outputs, no DCLS layer left, and
the baked weights rebuilt from their file into the DSC architecture."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from audiosweep.config import load_preset
from audiosweep.models import create_model_from_config
from audiosweep.models.bake import bake_dcls, export_baked, load_baked
from audiosweep.models.dcls_substitution import dcls_layers
from audiosweep.train.checkpoint import save_model_weights


def _trained_like(arch: str, conv: str = "dcls_gauss"):
    """A demo model whose DCLS positions have moved off their initial grid, as after training."""
    cfg = load_preset("demo").with_overrides({"model.arch": arch, "model.conv": conv})
    torch.manual_seed(0)
    model = create_model_from_config(cfg, 10)
    with torch.no_grad():
        for _, layer in dcls_layers(model):
            layer.P.add_(torch.randn_like(layer.P) * 2.0)
    return cfg, model.eval()


@pytest.mark.parametrize("arch", ["convnext_micro", "convformer_micro", "fastvit_micro"])
def test_a_baked_model_computes_what_the_dcls_model_computes(arch) -> None:
    _, model = _trained_like(arch)
    baked, layers = bake_dcls(model)
    assert layers and not dcls_layers(baked)
    assert len(layers) == len(dcls_layers(model))
    for name, (kh, kw, _, _) in layers.items():
        conv = baked.get_submodule(name)
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (kh, kw)
        assert kh <= 23 and kw <= 23
    x = torch.randn(2, 1, 32, 129)
    with torch.no_grad():
        torch.testing.assert_close(baked(x), model(x), rtol=1e-5, atol=1e-5)


def test_an_exported_baked_run_loads_into_the_dsc_architecture(tmp_path) -> None:
    cfg, model = _trained_like("convnext_micro")
    run = tmp_path / "run"
    run.mkdir()
    save_model_weights(model, run / "model.safetensors")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    info = export_baked(run, tmp_path / "baked.safetensors")
    assert info["baked_layers"] == len(dcls_layers(model))
    loaded = load_baked(tmp_path / "baked.safetensors")
    assert not dcls_layers(loaded)
    x = torch.randn(1, 1, 32, 129)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))  # written whole


@pytest.mark.parametrize("conv", ["dcls_gauss", "dcls_bilinear"])
def test_sp4asc_channelwise_dcls_bakes_into_1xk_and_kx1_convolutions(conv) -> None:
    cfg, model = _trained_like("sp4asc", conv)
    baked, layers = bake_dcls(model)
    assert layers and not dcls_layers(baked)
    for name, (kh, kw, _, _) in layers.items():
        along_time = model.get_submodule(name).axis == -1
        assert (kh == 1) if along_time else (kw == 1), (name, kh, kw)
    x = torch.randn(2, 1, cfg.audio.n_mels, 65)
    with torch.no_grad():
        torch.testing.assert_close(baked(x), model(x), rtol=1e-5, atol=1e-5)
