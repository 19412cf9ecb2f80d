"""The paper's vision backbones from timm, adapted to 1-channel log-mel input.

Adaptations (as in the reference DCLS-Audio code): the (2, 16) audio stem; random weights
(``model.init`` loads ImageNet ones afterwards, see models/pretrained.py);
drop path 0.4 rising linearly over the blocks (timm's schedule); layer-scale init 1e-6 where the
model has layer scale (ConvNeXt, FastViT; timm's ConvFormer has none). Heads are timm's:
ConvNeXt GAP -> LayerNorm -> Linear, ConvFormer GAP -> LayerNorm -> MLP head, FastViT final
MobileOne conv -> GAP -> Linear. The small variants follow the same recipe for CPU runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import timm
from timm.models.metaformer import LayerNorm2dNoBias, MetaFormer, SepConv
from torch import nn

from audiosweep.config import ModelConfig
from audiosweep.models.registry import CONV_TYPES, dcls_version, register_model
from audiosweep.models.stem import audio_patch_stem

LAYER_SCALE_INIT = 1e-6
AUDIOSET_CLASSES = 527
# The paper's setting (Table 1: DCLS-Gauss, 23x23 dilated kernel, 26 elements; drop path 0.4)
# is stated once, as the trial config's defaults.
_PAPER = ModelConfig()


def register_backbone(
    *, family: str, description: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(num_classes, drop_path_rate, **options) -> DSC model``; the DCLS cases are
    the same model after `replace_depthwise_dcls`."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        @functools.wraps(fn)
        def build(
            *,
            num_classes: int,
            conv: str = "dsc",
            drop_path_rate: float = _PAPER.drop_path_rate,
            dilated_kernel_size: int = _PAPER.dilated_kernel_size,
            kernel_count: int = _PAPER.kernel_count,
            dcls_impl: str = _PAPER.dcls_impl,
            **options,
        ) -> nn.Module:
            model = fn(num_classes, drop_path_rate, **options)
            if conv != "dsc":
                # Imported here: DSC models (and baked DCLS ones) are built without `dcls`.
                from audiosweep.models.dcls_substitution import replace_depthwise_dcls

                replace_depthwise_dcls(
                    model,
                    dcls_version(conv),
                    dilated_kernel_size=dilated_kernel_size,
                    kernel_count=kernel_count,
                    impl=dcls_impl,
                )
            return model

        return register_model(
            family=family,
            description=description,
            conv_types=CONV_TYPES,
            num_classes=AUDIOSET_CLASSES,
        )(build)

    return decorator


def _timm_backbone(
    variant: str, num_classes: int, drop_path_rate: float, layer_scale_key: str, **options
) -> nn.Module:
    """A timm model on 1-channel input, its layer scale (named `layer_scale_key` in timm)
    starting at `LAYER_SCALE_INIT` unless `options` says otherwise; the stem is swapped after."""
    return timm.create_model(
        variant,
        pretrained=False,
        in_chans=1,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        **{layer_scale_key: LAYER_SCALE_INIT, **options},
    )


def _convnext(variant: str, num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    model = _timm_backbone(variant, num_classes, drop_path_rate, "ls_init_value", **options)
    # timm's patch stem is Sequential(conv, norm): keep the norm, swap the conv.
    model.stem[0] = audio_patch_stem(model.stem[0].out_channels, bias=True)
    return model


def _convformer(model: MetaFormer) -> MetaFormer:
    model.stem.conv = audio_patch_stem(model.stem.conv.out_channels, bias=False)
    return model


def _fastvit(variant: str, num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    model = _timm_backbone(
        variant, num_classes, drop_path_rate, "layer_scale_init_value", **options
    )
    # The whole MobileOne stem gives way to a bare conv: no norm, no activation.
    model.stem = audio_patch_stem(model.feature_info[0]["num_chs"], bias=False)
    return model


@register_backbone(family="convnext", description="ConvNeXt-T (paper)")
def convnext_tiny(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    return _convnext("convnext_tiny", num_classes, drop_path_rate, **options)


@register_backbone(family="convnext", description="ConvNeXt-atto (CPU variant)")
def convnext_atto(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    return _convnext("convnext_atto", num_classes, drop_path_rate, **options)


@register_backbone(family="convformer", description="ConvFormer-S18 (paper)")
def convformer_s18(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    model = timm.create_model(
        "convformer_s18",
        pretrained=False,
        in_chans=1,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        **options,
    )
    return _convformer(model)


@register_backbone(
    family="convformer",
    description="ConvFormer, depths 2-2-6-2, widths 32-256 (CPU variant)",
)
def convformer_atto(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    return _small_convformer(num_classes, drop_path_rate, **{"depths": (2, 2, 6, 2), **options})


def _small_convformer(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    model = MetaFormer(
        in_chans=1,
        num_classes=num_classes,
        token_mixers=SepConv,
        norm_layers=LayerNorm2dNoBias,
        drop_path_rate=drop_path_rate,
        **{"dims": (32, 64, 128, 256), **options},
    )
    return _convformer(model)


@register_backbone(family="fastvit", description="FastViT-SA24 (paper)")
def fastvit_sa24(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    return _fastvit("fastvit_sa24", num_classes, drop_path_rate, **options)


@register_backbone(family="fastvit", description="FastViT-T8 (CPU variant)")
def fastvit_t8(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    return _fastvit("fastvit_t8", num_classes, drop_path_rate, **options)


# The demo's stand-ins: the same blocks at depths 1-1-3-1 (FastViT 1-1-2-1) and widths
# 32-256, about 4x cheaper per step than the CPU variants above, so that the demo grid's 18
# trials each get the few hundred optimizer steps the LayerNorm nets need to learn on one core.
MICRO_DEPTHS = (1, 1, 3, 1)
MICRO_WIDTHS = (32, 64, 128, 256)


@register_backbone(
    family="convnext",
    description="ConvNeXt, depths 1-1-3-1, widths 32-256 (demo)",
)
def convnext_micro(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    options = {"depths": MICRO_DEPTHS, "dims": MICRO_WIDTHS, **options}
    return _convnext("convnext_atto", num_classes, drop_path_rate, **options)


@register_backbone(
    family="convformer",
    description="ConvFormer, depths 1-1-3-1, widths 32-256 (demo)",
)
def convformer_micro(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    options = {"depths": MICRO_DEPTHS, "dims": MICRO_WIDTHS, **options}
    return _small_convformer(num_classes, drop_path_rate, **options)


@register_backbone(family="fastvit", description="FastViT, depths 1-1-2-1, widths 32-256 (demo)")
def fastvit_micro(num_classes: int, drop_path_rate: float, **options) -> nn.Module:
    options = {"layers": (1, 1, 2, 1), "embed_dims": MICRO_WIDTHS, **options}
    return _fastvit("fastvit_t8", num_classes, drop_path_rate, **options)
