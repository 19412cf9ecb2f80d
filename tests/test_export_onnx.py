"""`audiosweep export --onnx`: one graph from waveform to scores, DCLS baked in, that onnxruntime
runs at any batch and length with torch's numbers; and a baked model that loads without `dcls`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from audiosweep.config import load_preset
from audiosweep.models import create_model_from_config
from audiosweep.models.dcls_substitution import dcls_layers
from audiosweep.train.checkpoint import save_model_weights
from checkpoint_layouts import fb_convnext_layout

CLASSES = 10


def _trained_like(arch: str, conv: str = "dcls_gauss"):
    """A demo-preset model whose DCLS positions moved off their initial grid, as in training."""
    cfg = load_preset("demo").with_overrides({"model.arch": arch, "model.conv": conv})
    torch.manual_seed(0)
    model = create_model_from_config(cfg, CLASSES)
    with torch.no_grad():
        for _, layer in dcls_layers(model):
            layer.P.add_(torch.randn_like(layer.P) * 2.0)
    return cfg, model.eval()


def _run_folder(tmp_path: Path, cfg, model) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    save_model_weights(model, run / "model.safetensors")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    return run


def _torch_logits(cfg, model, waves: np.ndarray) -> np.ndarray:
    from audiosweep.audio import FrontEnd

    with torch.no_grad():
        return model(FrontEnd(cfg.audio).eval()(torch.from_numpy(waves))).numpy()


def _export(args: list[str], capsys) -> dict:
    from audiosweep.cli import main

    assert main(["export", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("arch", ["convformer_micro", "fastvit_micro", "sp4asc"])
def test_a_dcls_run_exports_to_onnx_that_matches_torch_at_any_batch_and_length(
    tmp_path, capsys, arch
) -> None:
    cfg, model = _trained_like(arch)
    out = tmp_path / "model.onnx"
    info = _export(["--run", str(_run_folder(tmp_path, cfg, model)), "--onnx", str(out)], capsys)
    assert info["baked_layers"] == len(dcls_layers(model)) > 0
    assert info["check"]["max_rel_diff_vs_torch"] <= 1e-4
    assert info["bytes"] == out.stat().st_size and info["opset"] >= 17

    # Another batch size and length than the export's example: the axes are dynamic.
    waves = np.random.default_rng(1).standard_normal((3, cfg.clip_samples() * 3 // 2))
    waves = (0.1 * waves).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probabilities"], {"waveform": waves})
    want = _torch_logits(cfg, model, waves)
    assert logits.shape == (3, CLASSES)
    assert np.abs(logits - want).max() <= 1e-4 * np.abs(want).max()
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-want)), rtol=1e-4, atol=1e-6)
    meta = session.get_modelmeta().custom_metadata_map
    assert int(meta["audiosweep.sample_rate"]) == cfg.audio.sample_rate
    assert len(json.loads(meta["audiosweep.class_names"])) == CLASSES


def test_a_reference_checkpoint_exports_with_source_and_preset(tmp_path, capsys) -> None:
    """The `--model` form: a DCLS-Audio (ConvNeXt) checkpoint, config from the preset."""
    cfg, model = _trained_like("convnext_micro")
    path = tmp_path / "checkpoint-best.pth"
    torch.save(
        {
            "model": fb_convnext_layout(model),
            "epoch": 59,
            "args": argparse.Namespace(model="convnext_dcls_audio"),
        },
        path,
    )
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},c{i}\n" for i in range(10)))
    out = tmp_path / "convnext.onnx"
    info = _export(
        ["--model", str(path), "--source", "dcls-audio", "--preset", "demo"]
        + ["model.arch=convnext_micro", "model.conv=dcls_gauss", "data.path=/nonexistent"]
        + ["--labels", str(labels), "--onnx", str(out)],
        capsys,
    )
    assert "synthetic" in info["check"]["example"]  # no dataset here: said so
    waves = (0.1 * np.random.default_rng(2).standard_normal((2, cfg.clip_samples()))).astype(
        np.float32
    )
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"waveform": waves})
    want = _torch_logits(cfg, model, waves)
    assert np.abs(logits - want).max() <= 1e-4 * np.abs(want).max()
    names = json.loads(session.get_modelmeta().custom_metadata_map["audiosweep.class_names"])
    assert names == [f"c{i}" for i in range(10)]


def test_an_export_that_fails_its_check_leaves_no_file(tmp_path) -> None:
    from audiosweep.audio import FrontEnd
    from audiosweep.config import AudioConfig
    from audiosweep.errors import ExportError
    from audiosweep.models.onnx_export import export_onnx

    tiny = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    audio = AudioConfig(sample_rate=16_000, n_mels=32, f_max=8_000)
    with pytest.raises(ExportError, match="was not written"):
        export_onnx(
            tiny.eval(),
            FrontEnd(audio),
            tmp_path / "m.onnx",
            0.1 * torch.randn(2, 16_000),
            activation="sigmoid",
            sample_rate=16_000,
            clip_samples=16_000,
            tolerance=-1.0,  # no result passes
        )
    assert list(tmp_path.iterdir()) == []


BLOCK_DCLS = """
import sys
class NoDcls:
    def find_spec(self, name, path=None, target=None):
        if name == "DCLS" or name.startswith("DCLS."):
            raise ImportError("dcls is not installed")
sys.meta_path.insert(0, NoDcls())
import numpy as np, torch
from audiosweep.models.bake import load_baked
model = load_baked(sys.argv[1])
x = torch.from_numpy(np.load(sys.argv[2]))
with torch.no_grad():
    np.save(sys.argv[3], model(x).numpy())
assert not [m for m in sys.modules if m.startswith("DCLS")]
"""


@pytest.mark.parametrize("arch", ["convnext_micro", "sp4asc"])
def test_a_baked_model_loads_and_runs_with_dcls_uninstalled(tmp_path, arch) -> None:
    from audiosweep.models.bake import export_baked

    cfg, model = _trained_like(arch)
    export_baked(_run_folder(tmp_path, cfg, model), tmp_path / "baked.safetensors")
    x = torch.randn(2, 1, cfg.audio.n_mels, 129)
    np.save(tmp_path / "x.npy", x.numpy())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-c", BLOCK_DCLS, str(tmp_path / "baked.safetensors")]
        + [str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        env=env,
        timeout=300,
    )
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-5)
