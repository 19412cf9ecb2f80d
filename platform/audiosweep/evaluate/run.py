"""Evaluate a checkpoint on a dataset split: predictions over Ray, metrics, report files.

The split is read through the same planned datasource as a trial's evaluation (every clip
once), probabilities come from a pool of model replicas (`predict.Predictor`), and the metrics
are the trial's own (its task's `metrics`, `train.task`), so evaluating a trial's final weights gives
the eval mAP the trial reported.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from audiosweep.config import ConfigError, TrialConfig
from audiosweep.data.schema import DatasetError, DatasetInfo
from audiosweep.evaluate.source import CheckpointSource, load_into
from audiosweep.layout import CONFIG_FILE, EVALUATION_FILE, PER_CLASS_AP_FILE, SCORES_FILE


@dataclass
class EvalOptions:
    split: str | None = None  # None: the config's eval split
    ema: bool = False
    tta_views: int | None = None  # None: the config's augment.tta_views
    workers: int | None = None  # None: train.num_workers with GPUs, else 1
    cpus_per_worker: float | None = None  # None: train.cpus_per_worker, capped to fit a node
    seed: int = 0


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    class_names: list[str]
    per_class: dict[str, np.ndarray] = field(repr=False)  # ap, auc, dprime, positives
    clip_ids: list[str] = field(default_factory=list, repr=False)  # sorted
    scores: np.ndarray | None = field(default=None, repr=False)  # (clips, classes) probabilities
    targets: np.ndarray | None = field(default=None, repr=False)


def resolve_eval_config(
    checkpoint: CheckpointSource, preset: str | None, overrides: list[str]
) -> TrialConfig:
    """The preset (+ overrides) when given, else the config the checkpoint came with."""
    from audiosweep.config import load_preset

    if preset is not None:
        cfg = load_preset(preset, overrides)
    elif checkpoint.config is not None:
        cfg = TrialConfig.from_dict(checkpoint.config).with_overrides(overrides)
    else:
        raise ConfigError(
            f"no config came with {checkpoint.location}: pass --preset (and model.* overrides "
            "naming the arch and conv, e.g. --preset paper model.arch=convnext_tiny)"
        )
    # The weights come from the checkpoint: the initial ones are never fetched.
    return cfg.with_overrides({"model.init": "random"})


def check_dataset(cfg: TrialConfig, split: str) -> tuple[TrialConfig, DatasetInfo]:
    """The dataset of `cfg` must exist, have `split` and the front end's sample rate."""
    from audiosweep.config import resolve_path
    from audiosweep.data.schema import MANIFEST_NAME

    data_path = resolve_path(cfg.data.path)
    if not Path(data_path, MANIFEST_NAME).is_file():
        fix = f"; make it with: {cfg.data.prepare}" if cfg.data.prepare else ""
        from audiosweep.train.checks import JOB_COPY_HINT, JOB_COPY_MARK

        fix += JOB_COPY_HINT * (JOB_COPY_MARK in data_path)
        raise DatasetError(f"no dataset at {data_path} (data.path){fix}")
    info = DatasetInfo.load(data_path)
    info.split(split)  # a missing split fails here, naming the ones there are
    if info.sample_rate != cfg.audio.sample_rate:
        raise ConfigError(
            f"dataset {data_path} is sampled at {info.sample_rate} Hz but audio.sample_rate is "
            f"{cfg.audio.sample_rate}; set audio.sample_rate={info.sample_rate}"
        )
    cfg = cfg.with_overrides(
        {"data.path": data_path, "data.clip_seconds": cfg.data.clip_seconds or info.clip_seconds}
    )
    return cfg, info


def build_model(cfg: TrialConfig, num_classes: int, checkpoint: CheckpointSource, ema: bool):
    """The config's model with the checkpoint's weights (fails in one line if they do not fit)."""
    from audiosweep.models import create_model_from_config

    try:
        model = create_model_from_config(cfg, num_classes)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"model {cfg.case} cannot be built from model.*: {err}") from None
    load_into(model, checkpoint, ema=ema)
    return model.eval()


def evaluate_split(
    cfg: TrialConfig,
    info: DatasetInfo,
    model: torch.nn.Module,
    options: EvalOptions,
) -> Evaluation:
    """Predict every clip of the split on a pool of replicas of `model`; the trial's metrics."""
    import ray

    from audiosweep.data import read_split
    from audiosweep.evaluate.predict import Predictor
    from audiosweep.train.metrics_multilabel import auc_dprime
    from audiosweep.train.task import task_for

    split = options.split or cfg.data.eval_split
    tta = cfg.augment.tta_views if options.tta_views is None else options.tta_views
    workers, cpus, gpus = replica_resources(cfg, options)
    ds = read_split(
        cfg.data.path,
        split,
        clip_seconds=cfg.data.clip_seconds,
        with_clip_id=True,
        read_cpus=cfg.data.read_cpus,
        epoch=0,  # every clip once, in a fixed order
        batch_size=cfg.train.eval_batch_size,
    )
    weights = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
    predictions = ds.map_batches(
        Predictor,
        batch_size=cfg.train.eval_batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={
            "trial": cfg.to_dict(),
            "num_classes": info.num_classes,
            "weights": [weights],
            "tta_views": tta,
            "seed": options.seed,
            "threads": max(1, math.floor(cpus)),
        },
        concurrency=workers,
        num_cpus=cpus,
        **({"num_gpus": gpus} if gpus else {}),
    )
    ids, scores, targets = [], [], []
    for batch in predictions.iter_batches(batch_size=None, batch_format="numpy"):
        ids.extend(str(c) for c in batch["clip_id"])
        scores.append(np.asarray(batch["scores"], dtype=np.float32))
        targets.append(np.asarray(batch["target"], dtype=np.float32))
    expected = info.rows(split)
    if len(ids) != expected or len(set(ids)) != len(ids):
        raise RuntimeError(
            f"evaluation saw {len(ids)} predictions ({len(set(ids))} distinct clips) for the "
            f"{expected} rows of split {split!r}"
        )
    order = np.argsort(np.asarray(ids), kind="stable")
    all_scores = torch.from_numpy(np.concatenate(scores)[order])
    all_targets = torch.from_numpy(np.concatenate(targets)[order])
    metrics = task_for(cfg).metrics(all_targets, all_scores)
    metrics["eval_clips"] = len(ids)
    per_class_ap = metrics.pop("per_class_ap").numpy()
    aucs = auc_dprime(all_targets, all_scores)
    metrics.update(
        {
            "split": split,
            "tta_views": tta,
            "ema": options.ema,
            "workers": workers,
            "gpus_per_worker": gpus,
        }
    )
    return Evaluation(
        metrics=metrics,
        class_names=info.class_names,
        per_class={
            "positives": all_targets.sum(0).numpy(),
            "ap": per_class_ap,
            "auc": aucs["per_class_auc"].numpy(),
            "dprime": aucs["per_class_dprime"].numpy(),
        },
        clip_ids=[ids[i] for i in order],
        scores=all_scores.numpy(),
        targets=all_targets.numpy(),
    )


def replica_resources(cfg: TrialConfig, options: EvalOptions) -> tuple[int, float, float]:
    """(replicas, CPUs, GPUs per replica) for the cluster the driver is connected to.

    A GPU per replica whenever a node the cluster can grow to has GPUs (``train.gpus_per_worker``
    if set), none otherwise, whatever the preset asks (a GPU preset evaluated on a CPU machine
    would wait forever). CPUs: ``train.cpus_per_worker``, capped so that a replica and a read
    task fit the largest node.
    """
    from audiosweep.capacity import cluster_capacity, has_gpus

    types = [t for t in cluster_capacity().node_types if t.max_workers > 0]
    gpus = (cfg.train.gpus_per_worker or 1.0) if has_gpus(types) else 0.0
    hosts = [t for t in types if t.resources.get("GPU", 0.0) >= gpus] or types
    largest = max((t.resources.get("CPU", 0.0) for t in hosts), default=1.0)
    cpus = options.cpus_per_worker or min(
        cfg.train.cpus_per_worker, max(0.25, largest - cfg.data.read_cpus)
    )
    workers = options.workers or (cfg.train.num_workers if gpus else 1)
    return workers, cpus, gpus


def write_report(
    out: Path,
    evaluation: Evaluation,
    checkpoint: CheckpointSource,
    cfg: TrialConfig,
    *,
    overwrite: bool = False,
    save_scores: bool = False,
) -> Path:
    """metrics.json, per_class_ap.csv, config.yaml (and with `save_scores` scores.npz: clip ids,
    probabilities, targets) in `out`, all or nothing: the files are written to a temporary
    folder that takes `out`'s name only when complete."""
    from audiosweep.errors import UserError

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite or another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_per_class(tmp / PER_CLASS_AP_FILE, evaluation)
        if save_scores:
            np.savez_compressed(
                tmp / SCORES_FILE,
                clip_id=np.asarray(evaluation.clip_ids),
                scores=evaluation.scores,
                target=evaluation.targets,
            )
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        payload = {
            "checkpoint": checkpoint.location,
            "checkpoint_file": str(checkpoint.path),
            "checkpoint_sha256": checkpoint.sha256,
            "checkpoint_layout": checkpoint.layout,
            "model_id": checkpoint.model_id,
            "case": cfg.case,
            "dataset": cfg.data.path,
            **{k: _jsonable(v) for k, v in evaluation.metrics.items()},
        }
        (tmp / EVALUATION_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_per_class(path: Path, evaluation: Evaluation) -> None:
    cols = evaluation.per_class
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "display_name", "positives", "ap", "auc", "dprime"])
        for i, name in enumerate(evaluation.class_names):
            writer.writerow(
                [
                    i,
                    name,
                    int(cols["positives"][i]),
                    *(_cell(cols[key][i]) for key in ("ap", "auc", "dprime")),
                ]
            )


def _cell(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
