"""Where the weights to evaluate come from: any checkpoint a user has, read without unpickling.

Accepted locations:
- a trial's run folder (``runs/<name>``: ``config.yaml`` + ``model.safetensors``) or one of
  its Ray Train checkpoint folders (``state.pt``; the run's ``config.yaml`` is its parent's);
- a file: our ``state.pt``, a ``.safetensors`` state dict, or a checkpoint in a reference
  layout (``--source``, else detected from its keys) converted by `convert_checkpoint`;
- a URL of such a file (downloaded once into the cache, its sha256 checked when given);
- an MLflow logged model, ``models:/<model_id>`` (the weights and config the trial logged
  with it; its pickled copy of the model is never loaded).

``sha256`` is the digest of the file the weights were read from: it identifies the checkpoint
in the evaluation run's tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from audiosweep.errors import CheckpointError
from audiosweep.layout import CONFIG_FILE, MODEL_EMA_FILE, MODEL_FILE, STATE_FILE
from audiosweep.train.ema import EMA_STATE_KEY

TRAINING_STATE_KEYS = {"model", "optimizer", "scheduler", "epoch", "extra"}


@dataclass
class CheckpointSource:
    """A checkpoint as found: the weights in their own layout, and what came with them."""

    location: str
    path: Path  # the file the weights are read from
    sha256: str
    contents: dict[str, Any]  # what the file holds (a state dict or a training checkpoint)
    layout: str  # "audiosweep" (our keys) or a `convert.SOURCES` layout
    config: dict[str, Any] | None = None  # the run's resolved config, when it came with it
    model_id: str | None = None  # the MLflow logged model it came from


def open_checkpoint(
    location: str,
    *,
    source: str | None = None,
    ema: bool = False,
    sha256: str | None = None,
    tracking_uri: str | None = None,
) -> CheckpointSource:
    """Find and read the checkpoint at `location` (see the module docstring)."""
    from audiosweep.models.checkpoints import fetch, file_sha256, is_url

    model_id = None
    if location.startswith("models:/"):
        folder, model_id = _download_logged_model(location, tracking_uri)
        path, config = _in_folder(folder, ema)
    elif is_url(location):
        try:
            path = fetch(location, sha256)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot fetch {location}: {err}") from None
        config = None
    else:
        local = Path(location).expanduser()
        if local.is_dir():
            path, config = _in_folder(local, ema)
        elif local.is_file():
            path, config = local, _sibling_config(local)
        else:
            raise CheckpointError(f"checkpoint {location} does not exist")
        try:
            fetch(str(path), sha256)
        except ValueError as err:
            raise CheckpointError(str(err)) from None
    contents = _read(path)
    layout = "audiosweep" if source is None and _is_ours(contents, path) else source
    if layout is None:
        from audiosweep.models.pretrained import detect_source

        layout = detect_source(contents)
    return CheckpointSource(
        location=location,
        path=path,
        sha256=file_sha256(path),
        contents=contents,
        layout=layout,
        config=config,
        model_id=model_id,
    )


def _is_ours(contents: Mapping[str, Any], path: Path) -> bool:
    if set(contents) >= TRAINING_STATE_KEYS:
        return True
    # Our safetensors files hold the model's own (timm) keys; so do timm's, which load alike.
    return path.suffix == ".safetensors"


def _in_folder(folder: Path, ema: bool) -> tuple[Path, dict[str, Any] | None]:
    """The weights file of a run folder, a Ray Train checkpoint folder or a downloaded model."""
    for candidate in (folder, folder / "extra_files"):
        weights = candidate / (MODEL_EMA_FILE if ema else MODEL_FILE)
        if weights.is_file():
            return weights, _sibling_config(weights)
        if (candidate / STATE_FILE).is_file():
            return candidate / STATE_FILE, _config_near(candidate)
    wanted = MODEL_EMA_FILE if ema else MODEL_FILE
    raise CheckpointError(
        f"{folder} holds no {wanted} or {STATE_FILE}: pass a trial's run folder, one of its "
        "checkpoint_* folders, or a checkpoint file"
        + (" (EMA weights exist only for trials trained with train.ema_decay)" if ema else "")
    )


def _sibling_config(path: Path) -> dict[str, Any] | None:
    return _config_near(path.parent)


def _config_near(folder: Path) -> dict[str, Any] | None:
    # A Ray Train checkpoint folder sits inside the run folder that holds the config.
    for candidate in (folder / CONFIG_FILE, folder.parent / CONFIG_FILE):
        if candidate.is_file():
            data = yaml.safe_load(candidate.read_text())
            return data if isinstance(data, dict) else None
    return None


def _read(path: Path) -> dict[str, Any]:
    from audiosweep.models.checkpoints import read_checkpoint

    try:
        return read_checkpoint(path)
    except Exception as err:  # a truncated or foreign file: name it in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None


def _download_logged_model(uri: str, tracking_uri: str | None) -> tuple[Path, str | None]:
    import tempfile

    import mlflow
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    target = Path(tempfile.mkdtemp(prefix="audiosweep-model-"))
    # A models:/ URI is resolved through the registry URI, which does not follow the
    # `tracking_uri` argument: without MLFLOW_TRACKING_URI set it would look in ./mlruns.
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(target), tracking_uri=tracking_uri
        )
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"cannot download {uri}: {first}") from None
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    rest = uri[len("models:/") :].strip("/")
    model_id = rest if "/" not in rest else None  # models:/<name>/<version> has no id here
    return Path(local), model_id


def weights_of(checkpoint: CheckpointSource, *, ema: bool) -> dict[str, Tensor]:
    """The state dict inside one of our checkpoints or a timm one (EMA weights if `ema`)."""
    contents = checkpoint.contents
    if checkpoint.layout != "audiosweep":
        from audiosweep.models.convert import unwrap_checkpoint

        try:
            return unwrap_checkpoint(contents, checkpoint.layout, ema=ema)
        except ValueError as err:
            raise CheckpointError(str(err)) from None
    if set(contents) >= TRAINING_STATE_KEYS:
        if not ema:
            return dict(contents["model"])
        if EMA_STATE_KEY not in contents["extra"]:
            raise CheckpointError(
                f"checkpoint {checkpoint.location} has no EMA weights (trained without "
                "train.ema_decay); drop --ema"
            )
        return dict(contents["extra"][EMA_STATE_KEY])
    return dict(contents)


def load_into(model: torch.nn.Module, checkpoint: CheckpointSource, *, ema: bool) -> None:
    """Load the checkpoint into `model`, every tensor or nothing: a checkpoint that does not fit
    raises a one-line `CheckpointError` naming the mismatched keys and shapes."""
    info = getattr(model, "audiosweep_arch", {})
    case = f"{info.get('arch', '?')}/{info.get('conv', '?')}"
    if checkpoint.layout in ("audiosweep", "timm"):
        weights = weights_of(checkpoint, ema=ema)
    else:
        from audiosweep.models.convert import convert_checkpoint

        target = {key: value.shape for key, value in model.state_dict().items()}
        try:
            weights = convert_checkpoint(
                checkpoint.contents,
                arch=info["arch"],
                source=checkpoint.layout,
                target=target,
                ema=ema,
            ).state_dict
        except ValueError as err:
            raise CheckpointError(
                f"checkpoint {checkpoint.location} does not fit {case}: {err}"
            ) from None
    weights = with_shared_names(model, weights)
    problems = mismatches(model.state_dict(), weights)
    if problems:
        raise CheckpointError(
            f"checkpoint {checkpoint.location} does not fit {case} (model.*): {problems}"
        )
    model.load_state_dict(weights, strict=True)


def with_shared_names(model: torch.nn.Module, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`weights` with every name of a tensor the model shares between names: safetensors'
    `save_model` (our ``model.safetensors``) keeps one name per shared tensor, and a stage of a
    DCLS model shares its kernel positions across its blocks."""
    names: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        names.setdefault(id(value), []).append(key)
    out = dict(weights)
    for keys in names.values():
        given = next((k for k in keys if k in out), None)
        if given is not None:
            for key in keys:
                out.setdefault(key, out[given])
    return out


def mismatches(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], shown: int = 2) -> str:
    """A short description of the keys and shapes that differ ('' when they all fit)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, items in (
        ("shapes differ (checkpoint vs model)", shapes),
        ("missing", missing),
        ("unexpected", unexpected),
    ):
        if items:
            more = f", … {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:shown])}{more}")
    return "; ".join(parts)
