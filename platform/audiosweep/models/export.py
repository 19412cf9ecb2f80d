"""Float16 export of batch-norm-folded SP4ASC models (safetensors, no pickle).

The file holds the folded state dict in float16 and, in the safetensors metadata, the
architecture and its build options, so `load_folded_fp16` can rebuild the model. As in the
report, weights are stored in float16 and computation runs in float32 after loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from audiosweep.models.batchnorm_fold import fold_batchnorm, is_folded
from audiosweep.models.sp4asc import SP4ASC, sp4asc

FORMAT = "audiosweep-folded-fp16"
FORMAT_VERSION = "1"
ARCH = "sp4asc"


def export_folded_fp16(model: nn.Module, path: str | os.PathLike) -> dict:
    """Fold (if needed), cast to float16 and save to `path`; returns {"path", "bytes", "parameters"}."""
    if not isinstance(model, SP4ASC):
        raise TypeError(f"export_folded_fp16: expected an SP4ASC model, got {type(model).__name__}")
    folded = model if is_folded(model) else fold_batchnorm(model)
    tensors = {}
    for name, value in folded.state_dict().items():
        half = value.detach().to(device="cpu", dtype=torch.float16).contiguous()
        if not torch.isfinite(half).all():
            raise ValueError(
                f"export_folded_fp16: {name} does not fit in float16 "
                f"(max |value| {value.abs().max().item():.3g}); nothing written to {path}"
            )
        tensors[name] = half
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": ARCH,
        "config": json.dumps(model.config, sort_keys=True),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a failed export never leaves a complete-looking file.
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        save_file(tensors, str(partial), metadata=metadata)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "parameters": sum(t.numel() for t in tensors.values()),
    }


def load_folded_fp16(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the folded model saved by `export_folded_fp16`, cast to `dtype`, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_folded_fp16: no such file {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    if metadata.get("format") != FORMAT or metadata.get("arch") != ARCH:
        raise ValueError(
            f"load_folded_fp16: {path} is not an {ARCH} {FORMAT} export "
            f"(format={metadata.get('format')!r}, arch={metadata.get('arch')!r})"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"load_folded_fp16: {path} has format_version {metadata.get('format_version')!r}, "
            f"this code reads {FORMAT_VERSION!r}"
        )
    model = fold_batchnorm(sp4asc(**json.loads(metadata["config"])))
    try:
        model.load_state_dict({name: t.to(dtype) for name, t in tensors.items()}, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"load_folded_fp16: {path} does not match its stated config: {error}"
        ) from error
    return model.to(device=device, dtype=dtype).eval()
