"""DCLS layers baked into plain depthwise convolutions for inference.

Once trained, a DCLS layer's kernel positions are fixed: the layer is a depthwise convolution
whose dense kernel it rebuilds from weights, positions and sigmas on every forward. Baking
computes that kernel once, crops it to its non-zero extent (the rows and columns every channel
leaves at exactly zero, with the matching padding, so every output is unchanged) and puts it in
an `nn.Conv2d`. The baked model needs neither the `dcls` package nor the kernel construction.

`export_baked` writes a run's baked weights as safetensors with the recipe to rebuild the model
in their metadata: the DSC architecture, with each baked layer's kernel size and padding.
`load_baked` rebuilds it without importing `dcls`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

BAKED_METADATA_KEY = "audiosweep.baked"


@torch.no_grad()
def bake_dcls(model: nn.Module) -> tuple[nn.Module, dict[str, list[int]]]:
    """A copy of `model` in eval mode with every DCLS layer replaced by the depthwise
    `nn.Conv2d` it computes; and, per replaced layer, ``[kernel_h, kernel_w, pad_h, pad_w]``.

    The backbones' `FastDcls2d` layers and SP4ASC's channel-wise `AxisDcls1d` layers (a 1 x K
    kernel along time, K x 1 along frequency) are baked; a model without DCLS comes back as an
    eval-mode copy."""
    from audiosweep.models.dcls_fast import FastDcls2d
    from audiosweep.models.dcls_substitution import AxisDcls1d, dcls_layers

    baked = copy.deepcopy(model).eval()
    layers: dict[str, list[int]] = {}
    for name, layer in dcls_layers(baked):
        if layer.padding_mode != "zeros":
            raise ValueError(f"{name}: only zero padding can be baked")
        if isinstance(layer, FastDcls2d):
            kh, kw = layer.dilated_kernel_size
            kernel, padding = layer._kernel((0, kh), (0, kw), tuple(layer.padding))
        elif isinstance(layer, AxisDcls1d):
            kernel, padding = _axis_kernel(layer)
        else:
            raise ValueError(
                f"{name} is a {type(layer).__name__}: baking needs model.dcls_impl=fast "
                "(state dicts are interchangeable: rebuild the model with it and load them)"
            )
        conv = conv_like(layer, tuple(kernel.shape[-2:]), padding)
        conv.weight.copy_(kernel)
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
        parent, _, child = name.rpartition(".")
        setattr(baked.get_submodule(parent), child, conv)
        layers[name] = [*kernel.shape[-2:], *padding]
    return baked, layers


def _axis_kernel(layer: nn.Module) -> tuple[torch.Tensor, tuple[int, int]]:
    """The (C, 1, kh, kw) kernel and padding of a channel-wise 1-d DCLS layer applied along one
    axis of a (B, C, F, T) map, cropped to its non-zero extent."""
    from audiosweep.models.dcls_fast import zero_border

    line = layer.DCK(layer.weight, layer.P, layer.SIG)  # (C, 1, K), what its forward convolves
    pad = int(layer.padding[0])
    if layer.axis == -1:
        kernel, padding = line[:, :, None, :], (0, pad)
    else:
        kernel, padding = line[:, :, :, None], (pad, 0)
    cut_h, cut_w = zero_border(kernel, padding)
    h, w = kernel.shape[-2:]
    kernel = kernel[..., cut_h : h - cut_h, cut_w : w - cut_w]
    return kernel, (padding[0] - cut_h, padding[1] - cut_w)


def conv_like(layer: nn.Module, kernel: tuple[int, int], padding: tuple[int, int]) -> nn.Conv2d:
    """An `nn.Conv2d` with `layer`'s channels, groups, stride and bias, and the given kernel
    (a 1-d layer's stride applies to the axis it ran along; every baked layer here has 1)."""
    stride = tuple(layer.stride) if len(layer.stride) == 2 else (1, 1)
    return nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        kernel,
        stride=stride,
        padding=padding,
        groups=layer.groups,
        bias=layer.bias is not None,
    ).to(device=layer.weight.device, dtype=layer.weight.dtype)


def export_baked(
    run_dir: str | os.PathLike, out: str | os.PathLike, *, ema: bool = False
) -> dict[str, Any]:
    """Bake the final (or, with `ema`, the EMA) weights of a finished run folder into `out`
    (safetensors, written whole or not at all)."""
    import yaml
    from safetensors.torch import load_file, load_model, save_file

    from audiosweep.config import ConfigError, TrialConfig
    from audiosweep.errors import ExportError
    from audiosweep.layout import CONFIG_FILE, MODEL_EMA_FILE, MODEL_FILE
    from audiosweep.models.from_config import create_model_from_config, model_kwargs, num_classes_of

    run = Path(run_dir)
    config, weights = run / CONFIG_FILE, run / (MODEL_EMA_FILE if ema else MODEL_FILE)
    for path, what in ((config, "resolved config"), (weights, "final weights")):
        if not path.is_file():
            raise ExportError(
                f"{run} has no {path.name} ({what}); export a finished `audiosweep train` run"
                + (" trained with train.ema_decay" if ema and path == weights else "")
            )
    try:
        cfg = TrialConfig.from_dict(yaml.safe_load(config.read_text()))
    except (yaml.YAMLError, ConfigError) as err:
        raise ExportError(f"{config}: not a trial config ({err})") from None
    num_classes = num_classes_of(cfg, load_file(str(weights)))
    if num_classes is None:
        raise ExportError(f"{weights} does not fit {cfg.case}: no classifier of its shape")
    model = create_model_from_config(cfg, num_classes)
    # safetensors' own loader restores the names of tensors the model shares (DCLS positions).
    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise ExportError(f"{weights} does not fit {cfg.case}: {[*missing, *unexpected][:3]}")
    baked, layers = bake_dcls(model)
    recipe = {
        "arch": cfg.model.arch,
        "trained_conv": cfg.model.conv,
        "num_classes": num_classes,
        "options": {k: v for k, v in model_kwargs(cfg).items() if k != "conv"},
        "layers": layers,
    }
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    state = {k: v.contiguous() for k, v in baked.state_dict().items()}
    save_file(state, str(tmp), metadata={BAKED_METADATA_KEY: json.dumps(recipe)})
    os.replace(tmp, out)
    return {
        "out": str(out),
        "case": cfg.case,
        "baked_layers": len(layers),
        "kernel_sizes": sorted({f"{h}x{w}" for h, w, _, _ in layers.values()}),
        "bytes": out.stat().st_size,
    }


def load_baked(path: str | os.PathLike) -> nn.Module:
    """The model `export_baked` wrote, rebuilt as its DSC architecture with the baked kernels
    (no `dcls` import), in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from audiosweep.models.factory import create_model

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if BAKED_METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a baked model (no {BAKED_METADATA_KEY} metadata)")
    recipe = json.loads(metadata[BAKED_METADATA_KEY])
    model = create_model(
        recipe["arch"], conv="dsc", num_classes=recipe["num_classes"], **recipe["options"]
    )
    for name, (kh, kw, ph, pw) in recipe["layers"].items():
        parent, _, child = name.rpartition(".")
        dsc = model.get_submodule(name)
        setattr(model.get_submodule(parent), child, conv_like(dsc, (kh, kw), (ph, pw)))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
