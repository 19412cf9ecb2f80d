"""A trained tagger as one ONNX graph: waveform in, logits and probabilities out.

The graph holds the front end (STFT, mel filterbank, dB, normalisation), the model with every
DCLS layer baked into the plain depthwise convolution it computes (`bake.bake_dcls`), and the
task's activation, so a runtime needs neither torch nor `dcls`. Batch and time are dynamic: any
number of clips of any length from `min_seconds` on, at the model's sample rate.

The export checks itself before it keeps the file: onnxruntime runs the graph on the example
input and its logits must equal the (unbaked) torch model's within `tolerance` relative to the
largest logit; a failed check leaves no file behind. The graph's metadata carries the sample
rate, the clip length the model was trained on, the activation and the class names.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audiosweep.errors import ExportError
from audiosweep.models.bake import bake_dcls

OPSET = 18  # the first opset with the STFT and mel ops the front end lowers to, everywhere
TOLERANCE = 1e-4


class WaveformTagger(nn.Module):
    """(batch, samples) float32 waveforms at the model's rate -> (logits, probabilities)."""

    def __init__(self, frontend: nn.Module, model: nn.Module, activation: str) -> None:
        super().__init__()
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be sigmoid or softmax, got {activation!r}")
        self.frontend, self.model, self.activation = frontend, model, activation

    def forward(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(self.frontend(waveform, augment=False)).float()
        probs = torch.sigmoid(logits) if self.activation == "sigmoid" else logits.softmax(-1)
        return logits, probs


def export_onnx(
    model: nn.Module,
    frontend: nn.Module,
    out: str | os.PathLike,
    example: Tensor,
    *,
    activation: str,
    sample_rate: int,
    clip_samples: int,
    class_names: list[str] | None = None,
    min_seconds: float = 1.0,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Write `model` (DCLS baked) with its `frontend` to `out` and check it on `example`
    ((batch, samples) float32 waveforms); returns what was written and how well it agreed."""
    import onnx
    import onnxruntime as ort

    model, frontend = model.float().eval(), frontend.float().eval()
    baked, layers = bake_dcls(model)
    graph = WaveformTagger(frontend, baked, activation).eval()
    reference = WaveformTagger(frontend, model, activation).eval()
    example = example.float().cpu()
    if example.shape[0] < 2:
        # The exporter fixes an axis traced at size 1; two rows keep the batch dynamic.
        example = example.repeat(2, 1)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.onnx")
    started = time.perf_counter()
    batch = torch.export.Dim("batch", min=1, max=4096)
    samples = torch.export.Dim("samples", min=max(1, round(min_seconds * sample_rate)))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not ours
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                input_names=["waveform"],
                output_names=["logits", "probabilities"],
                dynamic_shapes={"waveform": {0: batch, 1: samples}},
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        program.save(str(tmp))
        proto = onnx.load(str(tmp))
        _set_metadata(
            proto,
            {
                "audiosweep.sample_rate": str(sample_rate),
                "audiosweep.clip_samples": str(clip_samples),
                "audiosweep.activation": activation,
                "audiosweep.class_names": json.dumps(class_names or []),
                "audiosweep.baked_layers": str(len(layers)),
            },
        )
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"waveform": example.numpy()})[0]
        with torch.no_grad():
            want = reference(example)[0].numpy()
        diff = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
        if not diff <= tolerance:
            raise ExportError(
                f"onnxruntime's logits differ from torch's by {diff:.2e} relative (limit "
                f"{tolerance:g}); {out} was not written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "out": str(out),
        "bytes": out.stat().st_size,
        "opset": OPSET,
        "inputs": {"waveform": ["batch", f"samples >= {samples.min}"], "dtype": "float32"},
        "outputs": {"logits": ["batch", int(want.shape[-1])], "probabilities": "the same"},
        "sample_rate": sample_rate,
        "clip_samples": clip_samples,
        "activation": activation,
        "baked_layers": len(layers),
        "check": {
            "example_shape": list(example.shape),
            "max_rel_diff_vs_torch": diff,
            "tolerance": tolerance,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def _set_metadata(proto, values: dict[str, str]) -> None:
    import onnx

    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The sample rate, clip length, activation and class names an exported graph carries."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "audiosweep.sample_rate" not in props:
        raise ExportError(f"{path} was not exported by audiosweep (no audiosweep.* metadata)")
    return {
        "sample_rate": int(props["audiosweep.sample_rate"]),
        "clip_samples": int(props["audiosweep.clip_samples"]),
        "activation": props["audiosweep.activation"],
        "class_names": json.loads(props["audiosweep.class_names"]),
    }
