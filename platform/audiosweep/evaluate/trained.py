"""A trained model found wherever it is, ready to run on recordings: `tag` and `export` start here.

The location is anything `evaluate` accepts (a run folder, one of its checkpoint folders, a
state dict, a reference checkpoint with ``source``, a URL, ``models:/<id>``); the config is the
one that came with it, or ``preset`` (+ overrides) for a checkpoint that came without one. The
number of classes is the dataset's when the config's dataset is on this machine, else the label
index's, else the checkpoint classifier's; the display names follow the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from audiosweep.config import ConfigError, TrialConfig, resolve_path
from audiosweep.evaluate.source import CheckpointSource


@dataclass
class TrainedModel:
    cfg: TrialConfig
    model: nn.Module  # eval mode, on the CPU
    class_names: list[str]
    checkpoint: CheckpointSource

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_trained(
    location: str,
    *,
    source: str | None = None,
    preset: str | None = None,
    overrides: list[str] | None = None,
    ema: bool = False,
    labels: str | None = None,
    tracking_uri: str | None = None,
) -> TrainedModel:
    """The model at `location` with its weights, config and class names (see the docstring)."""
    from audiosweep import tracking
    from audiosweep.evaluate.run import build_model, resolve_eval_config
    from audiosweep.evaluate.source import open_checkpoint

    checkpoint = open_checkpoint(
        location,
        source=source,
        ema=ema,
        tracking_uri=tracking.tracking_uri(tracking_uri)
        if location.startswith("models:/")
        else None,
    )
    cfg = resolve_eval_config(checkpoint, preset, list(overrides or []))
    num_classes = num_classes_for(cfg, checkpoint, ema, labels)
    names = class_names_for(cfg, num_classes, labels)
    return TrainedModel(cfg, build_model(cfg, num_classes, checkpoint, ema), names, checkpoint)


def num_classes_for(
    cfg: TrialConfig, checkpoint: CheckpointSource, ema: bool, labels: str | None
) -> int:
    """The dataset's classes, else the label index's, else the checkpoint's classifier size."""
    from audiosweep.data.schema import MANIFEST_NAME, DatasetInfo, LabelIndex

    data = Path(resolve_path(cfg.data.path))
    if (data / MANIFEST_NAME).is_file():
        return DatasetInfo.load(data).num_classes
    if labels is not None:
        return len(LabelIndex.read(labels))
    if checkpoint.layout not in ("audiosweep", "timm"):
        return 527  # the reference checkpoints are AudioSet taggers
    from audiosweep.evaluate.source import weights_of
    from audiosweep.models.from_config import num_classes_of

    found = num_classes_of(cfg, weights_of(checkpoint, ema=ema))
    if found is not None:
        return found
    raise ConfigError(f"cannot tell how many classes {checkpoint.location} has: pass --labels")


def class_names_for(cfg: TrialConfig, num_classes: int, labels: str | None) -> list[str]:
    """Display names: `labels` (a label index CSV), else the dataset's, else AudioSet's for 527
    classes, else ``class <i>``."""
    from audiosweep.data.schema import MANIFEST_NAME, DatasetInfo, LabelIndex, default_labels_path

    if labels is not None:
        names = list(LabelIndex.read(labels).names)
    elif Path(resolve_path(cfg.data.path), MANIFEST_NAME).is_file():
        names = list(DatasetInfo.load(resolve_path(cfg.data.path)).class_names)
    elif num_classes == 527:
        names = list(LabelIndex.read(default_labels_path()).names)
    else:
        names = [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ConfigError(f"the label index has {len(names)} classes, the model {num_classes}")
    return names
