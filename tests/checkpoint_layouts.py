"""Checkpoint layouts of the original code bases, written from our (timm) models for tests.

Each writer walks the model's modules and names every tensor the way the original code base
names it (facebookresearch/ConvNeXt, sail-sg/metaformer, apple/ml-fastvit, as the DCLS-Audio
repository uses them). They are independent of audiosweep.models.convert on purpose.
"""

from __future__ import annotations

from torch import Tensor, nn


def _put(out: dict[str, Tensor], prefix: str, module: nn.Module, *, linear: bool = False) -> None:
    """Every tensor of `module` under `prefix`; linear=True stores 1x1 convs as Linear weights."""
    for name, value in module.state_dict().items():
        if linear and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)
        out[f"{prefix}.{name}"] = value


def fb_convnext_layout(model: nn.Module) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    _put(out, "downsample_layers.0", model.stem)
    for i, stage in enumerate(model.stages):
        if i > 0:
            _put(out, f"downsample_layers.{i}", stage.downsample)
        for j, block in enumerate(stage.blocks):
            prefix = f"stages.{i}.{j}"
            _put(out, f"{prefix}.dwconv", block.conv_dw)
            _put(out, f"{prefix}.norm", block.norm)
            _put(out, f"{prefix}.pwconv1", block.mlp.fc1, linear=True)
            _put(out, f"{prefix}.pwconv2", block.mlp.fc2, linear=True)
            out[f"{prefix}.gamma"] = block.gamma.detach()
    _put(out, "norm", model.head.norm)
    _put(out, "head", model.head.fc)
    return out


def sail_metaformer_layout(model: nn.Module) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    _put(out, "downsample_layers.0.conv", model.stem.conv)
    _put(out, "downsample_layers.0.post_norm", model.stem.norm)
    for i, stage in enumerate(model.stages):
        if i > 0:
            _put(out, f"downsample_layers.{i}.pre_norm", stage.downsample.norm)
            _put(out, f"downsample_layers.{i}.conv", stage.downsample.conv)
        for j, block in enumerate(stage.blocks):
            # Block sub-modules keep their names in timm; sail's pointwise layers are Linear.
            _put(out, f"stages.{i}.{j}", block, linear=True)
    _put(out, "norm", model.head.norm)
    _put(out, "head", model.head.fc, linear=True)
    return out


# timm name -> ml-fastvit name (apple/ml-fastvit models/modules/mobileone.py, models/fastvit.py).
_APPLE_NAMES = {
    "conv_kxk": "rbr_conv",
    "conv_scale": "rbr_scale",
    "identity": "rbr_skip",
    "large_conv": "lkb_origin",
    "mlp": "convffn",
    "fc1": "reduce",
    "fc2": "expand",
}


def _put_apple(out: dict[str, Tensor], prefix: str, module: nn.Module) -> None:
    for name, value in module.state_dict().items():
        parts = name.split(".")
        if parts[-1] == "gamma":  # ml-fastvit's layer scales are bare parameters
            parts.pop()
        renamed = [
            _APPLE_NAMES.get(p, p) if p not in ("fc1", "fc2") or "se" in parts else p for p in parts
        ]
        out[f"{prefix}.{'.'.join(renamed)}"] = value


def apple_fastvit_layout(model: nn.Module) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    # DCLS-Audio's FastViT replaces the whole stem by a bare conv named patch_embed.
    _put(out, "patch_embed", model.stem)
    index = 0
    for stage in model.stages:
        if not isinstance(stage.downsample, nn.Identity):
            _put_apple(out, f"network.{index}.proj", stage.downsample.proj)
            index += 1
        if not isinstance(stage.pos_emb, nn.Identity):
            _put_apple(out, f"network.{index}.pe", stage.pos_emb.pos_enc)
            index += 1
        for j, block in enumerate(stage.blocks):
            _put_apple(out, f"network.{index}.{j}", block)
        index += 1
    _put_apple(out, "conv_exp", model.final_conv)
    _put(out, "head", model.head.fc)
    return out


LAYOUTS = {
    "convnext": fb_convnext_layout,
    "convformer": sail_metaformer_layout,
    "fastvit": apple_fastvit_layout,
}
