"""Checkpoints of the paper's backbones in their original layouts -> audiosweep state dicts.

Our backbones are timm models with the (2, 16) audio stem, so a checkpoint written by another
code base needs its keys renamed to timm's. The layouts (key names are data facts, taken from
the code that writes them):

- ``fb-convnext``: facebookresearch/ConvNeXt (``downsample_layers.*``, ``stages.i.j.dwconv``,
  ``pwconv1/2``, ``gamma``, ``norm``, ``head``); the DCLS vision work's ConvNeXt-DCLS adds
  ``dwconv.P`` / ``dwconv.SIG`` to every block.
- ``sail-metaformer``: sail-sg/metaformer (``downsample_layers.i.{pre_norm,conv,post_norm}``,
  ``stages.i.j.*``, ``norm``, ``head.{fc1,norm,fc2}``).
- ``apple-fastvit``: apple/ml-fastvit (``patch_embed``, a flat ``network.N`` list of stages,
  patch embeddings and positional encodings, ``conv_exp``, ``head``; MobileOne ``rbr_*``).
- ``dcls-audio``: K-H-Ismail/DCLS-Audio's AudioSet checkpoints, ``{"model", "optimizer",
  "epoch", "scaler", "args"[, "model_ema"]}`` whose weights are in one of the three layouts
  above (by architecture family), with the audio stem already in place.
- ``timm``: timm's own names, which are also audiosweep's (no renaming).

Keys are renamed by explicit rules, so a key that no rule knows fails instead of being
dropped silently. Tensors that differ from the model's only by trailing singleton dimensions
(a Linear stored where timm has a 1x1 conv) are reshaped. The vision stem of an ImageNet
checkpoint has no place in the audio model and is left out; every other tensor is returned,
even when its shape differs from the model's (a 1000-class head, a 7x7 kernel where the
model has DCLS): deciding what to do with those is the loader's job (`models.pretrained`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from audiosweep.models.stem import STEM_KERNEL

SOURCES = ("dcls-audio", "fb-convnext", "timm", "sail-metaformer", "apple-fastvit")
# Architecture family -> the layout of its original code base (and of dcls-audio's checkpoints).
FAMILY_LAYOUTS = {
    "convnext": "fb-convnext",
    "convformer": "sail-metaformer",
    "fastvit": "apple-fastvit",
}
# Which entry of a training checkpoint holds the weights (plain, EMA); raw state dicts also pass.
_CONTAINERS = {
    "dcls-audio": ("model", "model_ema"),
    "fb-convnext": ("model", "model_ema"),
    # timm's train.py writes these, and sail's and Apple's training scripts are timm's.
    "timm": ("state_dict", "state_dict_ema"),
    "sail-metaformer": ("state_dict", "state_dict_ema"),
    "apple-fastvit": ("state_dict", "state_dict_ema"),
}

_P = r"(weight|bias|P|SIG)"  # parameters of a conv, DCLS or not
_NORM = r"(weight|bias)"

# fb-convnext (facebookresearch/ConvNeXt models/convnext.py, also DCLS-Audio models/convnext.py).
_FB_CONVNEXT = (
    (rf"downsample_layers\.0\.([01])\.{_NORM}", r"stem.\1.\2"),
    (rf"downsample_layers\.(\d+)\.([01])\.{_NORM}", r"stages.\1.downsample.\2.\3"),
    (rf"stages\.(\d+)\.(\d+)\.dwconv\.{_P}", r"stages.\1.blocks.\2.conv_dw.\3"),
    (rf"stages\.(\d+)\.(\d+)\.norm\.{_NORM}", r"stages.\1.blocks.\2.norm.\3"),
    (rf"stages\.(\d+)\.(\d+)\.pwconv([12])\.{_NORM}", r"stages.\1.blocks.\2.mlp.fc\3.\4"),
    (r"stages\.(\d+)\.(\d+)\.gamma", r"stages.\1.blocks.\2.gamma"),
    (rf"norm\.{_NORM}", r"head.norm.\1"),
    (rf"head\.{_NORM}", r"head.fc.\1"),
)

# sail-metaformer (sail-sg/metaformer metaformer.py, also DCLS-Audio models/metaformer.py).
_BLOCK = r"stages\.(\d+)\.(\d+)\."
_SAIL_METAFORMER = (
    (rf"downsample_layers\.0\.conv\.{_NORM}", r"stem.conv.\1"),
    (rf"downsample_layers\.0\.post_norm\.{_NORM}", r"stem.norm.\1"),
    (rf"downsample_layers\.(\d+)\.pre_norm\.{_NORM}", r"stages.\1.downsample.norm.\2"),
    (rf"downsample_layers\.(\d+)\.conv\.{_NORM}", r"stages.\1.downsample.conv.\2"),
    (rf"{_BLOCK}(norm[12])\.{_NORM}", r"stages.\1.blocks.\2.\3.\4"),
    (rf"{_BLOCK}token_mixer\.(pwconv[12]|dwconv)\.{_P}", r"stages.\1.blocks.\2.token_mixer.\3.\4"),
    (rf"{_BLOCK}(token_mixer\.act[12]|mlp\.act)\.(scale|bias)", r"stages.\1.blocks.\2.\3.\4"),
    (rf"{_BLOCK}mlp\.(fc[12])\.{_NORM}", r"stages.\1.blocks.\2.mlp.\3.\4"),
    (r"stages\.(\d+)\.(\d+)\.((?:res|layer)_scale[12])\.scale", r"stages.\1.blocks.\2.\3.scale"),
    (rf"norm\.{_NORM}", r"head.norm.\1"),
    (rf"head\.(fc1|norm|fc2)\.{_NORM}", r"head.fc.\1.\2"),
)

# apple-fastvit (apple/ml-fastvit models/fastvit.py and models/modules/mobileone.py, also
# DCLS-Audio models/fastvit.py): module names that timm renamed, one path segment each.
_APPLE_SEGMENTS = {
    "rbr_conv": "conv_kxk",
    "rbr_scale": "conv_scale",
    "rbr_skip": "identity",
    "lkb_origin": "large_conv",
    "convffn": "mlp",
    "reduce": "fc1",  # se.reduce
    "expand": "fc2",  # se.expand
}
# Apple stores layer scales as bare parameters; timm wraps them in a module with `gamma`.
_APPLE_LAYER_SCALES = ("layer_scale", "layer_scale_1", "layer_scale_2")


@dataclass
class Conversion:
    """A converted state dict and where each checkpoint key went."""

    state_dict: dict[str, Tensor]
    renamed: dict[str, str] = field(default_factory=dict)  # checkpoint key -> model key
    dropped: dict[str, str] = field(default_factory=dict)  # checkpoint key -> why


def convert_state_dict(
    checkpoint: Mapping[str, Any],
    *,
    arch: str,
    conv: str,
    source: str,
    ema: bool = False,
    **model_options: Any,
) -> dict[str, Tensor]:
    """`checkpoint` (a loaded checkpoint in `source`'s layout) as a state dict of
    ``create_model(arch, conv=conv, ...)``.

    ema picks the EMA weights of a training checkpoint (``model_ema`` / ``state_dict_ema``).
    model_options (e.g. ``dilated_kernel_size``) shape the target model as `create_model` would.
    Raises a one-line ValueError naming the first key that maps to nothing in the model.
    """
    target = model_shapes(arch, conv, **model_options)
    return convert_checkpoint(
        checkpoint, arch=arch, source=source, target=target, ema=ema
    ).state_dict


def model_shapes(arch: str, conv: str, **model_options: Any) -> dict[str, torch.Size]:
    """State dict key -> shape of ``create_model(arch, conv, ...)``, built without memory."""
    from audiosweep.models.factory import create_model

    with torch.device("meta"):
        model = create_model(arch, conv, **model_options)
    return {key: value.shape for key, value in model.state_dict().items()}


def convert_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    arch: str,
    source: str,
    target: Mapping[str, torch.Size],
    ema: bool = False,
) -> Conversion:
    """Like `convert_state_dict`, against the keys and shapes of a given model (`target`)."""
    from audiosweep.models.factory import get_arch

    family = get_arch(arch).family
    weights = unwrap_checkpoint(checkpoint, source, ema=ema)
    layout = source
    if source == "dcls-audio":
        if family not in FAMILY_LAYOUTS:
            raise ValueError(f"dcls-audio has no {arch} checkpoints (it has {_families()})")
        layout = FAMILY_LAYOUTS[family]
    elif source != "timm" and FAMILY_LAYOUTS.get(family) != source:
        raise ValueError(f"a {source} checkpoint cannot initialise {arch} ({family} family)")
    renamer = _RENAMERS[layout]
    names = renamer(list(weights))
    stem = _stem_prefix(target)
    stem_fits = _stem_fits(weights, names, target, stem)
    result = Conversion({})
    for key, value in weights.items():
        name = names[key]
        if stem is not None and name.startswith(stem) and not stem_fits:
            result.dropped[key] = "vision stem (the model has the (2, 16) audio stem)"
            continue
        if name not in target:
            raise ValueError(
                f"{source} checkpoint key {key!r} (renamed {name!r}) matches nothing in {arch}"
            )
        result.state_dict[name] = _fit_singletons(value, target[name])
        result.renamed[key] = name
    return result


def unwrap_checkpoint(
    checkpoint: Mapping[str, Any], source: str, *, ema: bool = False
) -> dict[str, Tensor]:
    """The weights inside a training checkpoint (or the checkpoint itself if it is one)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    plain, averaged = _CONTAINERS[source]
    entry = averaged if ema else plain
    if isinstance(checkpoint.get(entry), Mapping):
        weights = checkpoint[entry]
    elif source == "dcls-audio" or ema:
        found = ", ".join(repr(k) for k in checkpoint if not isinstance(checkpoint[k], Tensor))
        raise ValueError(f"{source} checkpoint has no {entry!r} entry (entries: {found or 'none'})")
    else:
        weights = checkpoint
    for key, value in weights.items():
        if not isinstance(value, Tensor):
            raise ValueError(
                f"{source} checkpoint entry {key!r} is a {type(value).__name__}, not a tensor"
            )
    return dict(weights)


def _families() -> str:
    return ", ".join(FAMILY_LAYOUTS)


def _rule_renamer(
    rules: tuple[tuple[str, str], ...], layout: str
) -> Callable[[list[str]], dict[str, str]]:
    compiled = [(re.compile(pattern), template) for pattern, template in rules]

    def rename(keys: list[str]) -> dict[str, str]:
        return {key: _apply_rules(key, compiled, layout) for key in keys}

    return rename


def _apply_rules(key: str, rules: list[tuple[re.Pattern, str]], layout: str) -> str:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match:
            return match.expand(template)
    raise ValueError(f"{layout} checkpoint key {key!r} is not a {layout} key")


def _identity(keys: list[str]) -> dict[str, str]:
    return {key: key for key in keys}


_NETWORK = re.compile(r"network\.(\d+)\.(.+)")


def _rename_apple(keys: list[str]) -> dict[str, str]:
    # `network` is flat: [stage 0, patch embed, stage 1, ..., (pos. encoding), stage 3].
    # A patch embedding (`.proj`) starts the next stage, so an entry's stage is the number of
    # patch embeddings at or before it.
    embeds = sorted(
        {
            int(m.group(1))
            for k in keys
            if (m := _NETWORK.fullmatch(k)) and m.group(2).startswith("proj.")
        }
    )
    return {key: _apple_key(key, embeds) for key in keys}


def _apple_key(key: str, embeds: list[int]) -> str:
    match = _NETWORK.fullmatch(key)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        stage = f"stages.{sum(1 for e in embeds if e <= index)}"
        head, _, tail = rest.partition(".")
        if head == "proj":
            prefix, rest = f"{stage}.downsample.proj", tail
        elif head == "pe":
            prefix, rest = f"{stage}.pos_emb.pos_enc", tail
        elif head.isdigit():
            prefix, rest = f"{stage}.blocks.{head}", tail
        else:
            raise ValueError(f"apple-fastvit checkpoint key {key!r} is not an apple-fastvit key")
    else:
        head, _, rest = key.partition(".")
        renamed = {"patch_embed": "stem", "conv_exp": "final_conv", "head": "head.fc"}
        if head not in renamed or not rest:
            raise ValueError(f"apple-fastvit checkpoint key {key!r} is not an apple-fastvit key")
        prefix = renamed[head]
    parts = [_APPLE_SEGMENTS.get(part, part) for part in rest.split(".")]
    if parts[-1] in _APPLE_LAYER_SCALES:
        parts.append("gamma")
    return ".".join([prefix, *parts])


_RENAMERS: dict[str, Callable[[list[str]], dict[str, str]]] = {
    "fb-convnext": _rule_renamer(_FB_CONVNEXT, "fb-convnext"),
    "sail-metaformer": _rule_renamer(_SAIL_METAFORMER, "sail-metaformer"),
    "apple-fastvit": _rename_apple,
    "timm": _identity,
}


def _stem_prefix(target: Mapping[str, torch.Size]) -> str | None:
    """Module path ("stem.0.", "stem.conv.", "stem.") of the model's audio stem conv."""
    for key, shape in target.items():
        is_conv = key.startswith("stem") and key.endswith("weight") and len(shape) == 4
        if is_conv and shape[1] == 1 and tuple(shape[2:]) == STEM_KERNEL:
            return key[: -len("weight")]
    return None


def _stem_fits(
    weights: Mapping[str, Tensor],
    names: Mapping[str, str],
    target: Mapping[str, torch.Size],
    stem: str | None,
) -> bool:
    """Whether the checkpoint's stem conv is an audio stem of the model's shape."""
    if stem is None:
        return True
    for key, name in names.items():
        if name == stem + "weight":
            return weights[key].shape == target[name]
    return False


def _fit_singletons(value: Tensor, shape: torch.Size) -> Tensor:
    """`value` reshaped to `shape` when they differ only by trailing size-1 dimensions."""
    if value.shape == shape or value.numel() != shape.numel():
        return value
    if _strip_trailing_ones(value.shape) == _strip_trailing_ones(shape):
        return value.reshape(shape)
    return value


def _strip_trailing_ones(shape: torch.Size) -> tuple[int, ...]:
    dims = list(shape)
    while dims and dims[-1] == 1:
        dims.pop()
    return tuple(dims)
