"""Initialise a freshly built model from a checkpoint, as the paper did, with a load report.

What is not loaded, and why (the reference code's choices, made explicit):
- the stem: an ImageNet checkpoint's RGB stem gives way to the fresh (2, 16) audio stem;
- the head, where its shape differs (1000 ImageNet classes): it keeps its fresh init;
- DCLS layers initialised from a DSC checkpoint (or from DCLS weights of another kernel
  size or count): weights, positions and sigmas keep their fresh init, everything else loads.
Anything else that does not fit fails, naming the tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from audiosweep.models.checkpoints import (
    fetch,
    file_sha256,
    imagenet_checkpoint,
    is_url,
    read_checkpoint,
)
from audiosweep.models.convert import convert_checkpoint
from audiosweep.models.dcls_substitution import dcls_layers, position_layers
from audiosweep.models.stem import STEM_KERNEL

INIT_CHOICES = ("random", "imagenet")  # or a local path or URL


@dataclass
class LoadReport:
    checkpoint: str
    source: str
    sha256: str
    loaded: list[str] = field(default_factory=list)  # model keys
    skipped: dict[str, str] = field(default_factory=dict)  # checkpoint key -> why
    reinitialised: dict[str, str] = field(default_factory=dict)  # model key -> why

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for why in (*self.skipped.values(), *self.reinitialised.values()):
            reasons[why] = reasons.get(why, 0) + 1
        details = "; ".join(f"{n} {why}" for why, n in reasons.items())
        return (
            f"init from {self.checkpoint} ({self.source}, sha256 {self.sha256[:12]}): "
            f"{len(self.loaded)} tensors loaded, {len(self.skipped)} checkpoint tensors skipped, "
            f"{len(self.reinitialised)} model tensors kept fresh"
            + (f" ({details})" if details else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def initialise_model(
    model: nn.Module, init: str, *, log: Callable[[str], None] | None = print
) -> LoadReport | None:
    """Apply a ``model.init`` value to a model built by `create_model`; None for "random".

    init: "random", "imagenet" (the paper's checkpoint for this case, see
    `checkpoints.PAPER_IMAGENET`), or a local path or URL of a checkpoint in any layout
    `convert_state_dict` knows (detected from its keys).
    """
    if init == "random":
        return None
    if init == "imagenet":
        entry = imagenet_checkpoint(*_case(model))
        location, source, sha256 = entry.url, entry.source, entry.sha256
    else:
        location, source, sha256 = init, None, None
    path = fetch(location, sha256)
    checkpoint = read_checkpoint(path)
    report = load_pretrained(
        model,
        checkpoint,
        source=source or detect_source(checkpoint),
        name=location,
        sha256=file_sha256(path),
    )
    if log is not None:
        log(f"[audiosweep] {report.summary()}")
    return report


def check_init(
    init: str, arch: str, conv: str, dilated_kernel_size: int, kernel_count: int
) -> None:
    """Fail early (on the driver, without downloading) if `init` cannot apply to the case."""
    if init == "random":
        return
    if init == "imagenet":
        imagenet_checkpoint(arch, conv, dilated_kernel_size, kernel_count)
    elif not is_url(init):
        fetch(init)  # a local file must exist


def _case(model: nn.Module) -> tuple[str, str, int | None, int | None]:
    info = getattr(model, "audiosweep_arch", None)
    if info is None:
        raise ValueError("initialise_model needs a model built by audiosweep's create_model")
    firsts = position_layers(model)
    if not firsts:
        return info["arch"], info["conv"], None, None
    layer = firsts[0][1]
    return info["arch"], info["conv"], int(layer.dilated_kernel_size[0]), int(layer.kernel_count)


def detect_source(checkpoint: Mapping[str, Any]) -> str:
    """The layout of a checkpoint, from its entries and key names."""
    if {"model", "epoch", "args"} <= set(checkpoint):
        return "dcls-audio"
    weights = checkpoint
    for entry in ("model", "state_dict"):
        if isinstance(checkpoint.get(entry), Mapping):
            weights = checkpoint[entry]
    keys = list(weights)
    if any(k.startswith("downsample_layers.0.0.") for k in keys):
        return "fb-convnext"
    if any(k.startswith("downsample_layers.0.conv.") for k in keys):
        return "sail-metaformer"
    if any(k.startswith(("network.", "patch_embed")) for k in keys):
        return "apple-fastvit"
    return "timm"


def load_pretrained(
    model: nn.Module,
    checkpoint: Mapping[str, Any],
    *,
    source: str,
    ema: bool = False,
    name: str = "checkpoint",
    sha256: str = "",
) -> LoadReport:
    """Load a checkpoint (already read) into `model` in place; returns what went where."""
    arch = _case(model)[0]
    state = model.state_dict()
    target = {key: value.shape for key, value in state.items()}
    conversion = convert_checkpoint(checkpoint, arch=arch, source=source, target=target, ema=ema)
    report = LoadReport(name, source, sha256, skipped=dict(conversion.dropped))
    original = {model_key: key for key, model_key in conversion.renamed.items()}
    dcls_keys = _dcls_keys(model)
    fits: dict[str, Tensor] = {}
    for key, value in conversion.state_dict.items():
        if value.shape == target[key]:
            fits[key] = value
            continue
        if key.startswith("head."):
            why = "head of another shape, re-initialised"
        elif key in dcls_keys:
            why = "kernel of another shape than the DCLS layer's, kept fresh"
        else:
            raise ValueError(
                f"checkpoint tensor {original[key]!r} has shape {tuple(value.shape)} but "
                f"{key!r} of {arch} has {tuple(target[key])}"
            )
        report.skipped[original[key]] = why
        report.reinitialised[key] = why
    _check_shared(model, fits)
    _check_missing(model, fits, report, dcls_keys)
    model.load_state_dict(fits, strict=False)
    report.loaded = sorted(fits)
    return report


def _dcls_keys(model: nn.Module) -> set[str]:
    return {f"{name}.{key}" for name, layer in dcls_layers(model) for key in layer.state_dict()}


def _check_missing(
    model: nn.Module, fits: Mapping[str, Tensor], report: LoadReport, dcls_keys: set[str]
) -> None:
    """Model tensors the checkpoint does not provide: only the stem, the head and DCLS layers
    built fresh may be missing."""
    fresh_dcls = {
        f"{name}.{key}"
        for name, layer in dcls_layers(model)
        if f"{name}.weight" not in fits
        for key in layer.state_dict()
    }
    stem = _stem_module(model)
    for key in model.state_dict():
        if key in fits or key in report.reinitialised:
            continue
        if stem and key.startswith(stem + "."):
            report.reinitialised[key] = "audio stem, kept fresh"
        elif key.startswith("head."):
            report.reinitialised[key] = "head not in the checkpoint, kept fresh"
        elif key in fresh_dcls:
            report.reinitialised[key] = "DCLS layer from a DSC checkpoint, kept fresh"
        else:
            raise ValueError(f"the checkpoint has no tensor for {key!r} of the model")


def _stem_module(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == STEM_KERNEL:
            return name
    return None


def _check_shared(model: nn.Module, fits: Mapping[str, Tensor]) -> None:
    """Tensors shared by several layers (DCLS positions of a stage) must get one value."""
    names_by_tensor: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names_by_tensor.setdefault(id(tensor), []).append(name)
    for names in names_by_tensor.values():
        values = [fits[n] for n in names if n in fits]
        if any(not torch.equal(values[0], v) for v in values[1:]):
            shown = [n for n in names if n in fits]
            raise ValueError(
                f"the checkpoint holds different values for {shown[0]!r} and {shown[-1]!r}, "
                "which share one tensor in the model (DCLS positions are shared per stage)"
            )
