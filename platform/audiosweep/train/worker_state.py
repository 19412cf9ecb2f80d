"""What a worker trains and carries from epoch to epoch: built from the trial config, restored
from the run's last checkpoint after a restart, saved as the checkpoint of each epoch."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.train
import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.layout import INIT_REPORT_FILE, PER_CLASS_AP_FILE, POSITIONS_FILE
from audiosweep.train import checkpoint as ckpt
from audiosweep.train.ema import EMA_STATE_KEY, WeightEma, create_ema
from audiosweep.train.recipe import Recipe, build_recipe
from audiosweep.train.seeding import derive_seed, seed_everything
from audiosweep.train.session import WorkerSession


@dataclass
class WorkerState:
    model: nn.Module  # wrapped for DDP when the trial has several workers
    recipe: Recipe
    ema: WeightEma | None
    param_counts: dict[str, int]
    positions_init: dict[str, torch.Tensor]
    init_report: dict[str, Any] = field(default_factory=dict)
    next_epoch: int = 0
    best_map: float = math.nan

    def track_best(self, eval_map: float) -> float:
        if not math.isnan(eval_map):
            self.best_map = eval_map if math.isnan(self.best_map) else max(self.best_map, eval_map)
        return self.best_map


def build_worker_state(
    cfg: TrialConfig,
    session: WorkerSession,
    *,
    num_classes: int,
    train_rows: int,
    log: Any = None,
) -> WorkerState:
    """The model (the same initial weights on every rank), its recipe and EMA; resumed from
    the session's checkpoint when there is one (its weights replace the initial ones, which
    are then not fetched)."""
    from audiosweep.models import (
        count_dcls_positions,
        count_parameters,
        create_model_from_config,
        dcls_positions,
        initialise_model,
    )

    seed_everything(derive_seed(cfg.train.seed, "init"))
    model = create_model_from_config(cfg, num_classes)
    restored = session.checkpoint()
    init_report = None if restored is not None else initialise_model(model, cfg.model.init, log=log)
    positions_init = {k: v.detach().clone() for k, v in dcls_positions(model).items()}
    param_counts = {
        "params_total": count_parameters(model),
        "params_dcls_positions": count_dcls_positions(model),
    }
    model = session.prepare_model(model)
    recipe = build_recipe(
        cfg, device=session.device(), model=model, train_rows=train_rows, world=session.world
    )
    extra: dict[str, Any] = {}
    state = WorkerState(
        model,
        recipe,
        None,
        param_counts,
        positions_init,
        init_report.to_dict() if init_report is not None else {},
    )
    if restored is not None:
        with restored.as_directory() as directory:
            saved = ckpt.load_training_state(Path(directory))
            restore_run_facts(state, Path(directory))
        extra = restore(state, saved)
        if log is not None:
            log(f"[audiosweep] resumed from checkpoint after epoch {state.next_epoch}")
    state.ema = create_ema(ckpt.unwrap(model), cfg.train.ema_decay, extra.get(EMA_STATE_KEY))
    return state


def restore(state: WorkerState, saved: dict[str, Any]) -> dict[str, Any]:
    """Load a training checkpoint into `state`; returns its ``extra`` entries."""

    ckpt.unwrap(state.model).load_state_dict(saved["model"])
    recipe = state.recipe
    recipe.optimizer.load_state_dict(saved["optimizer"])
    recipe.scheduler.load_state_dict(saved["scheduler"])
    if recipe.scaler is not None and saved["scaler"]:
        recipe.scaler.load_state_dict(saved["scaler"])
    extra = saved["extra"]
    state.next_epoch = int(saved["epoch"]) + 1
    state.best_map = float(extra.get("best_map", math.nan))
    return extra


def restore_run_facts(state: WorkerState, directory: Path) -> None:
    """What the run started from, which a restarted worker did not rebuild: the initial DCLS
    positions and the report of which initial weights were loaded."""
    if (directory / POSITIONS_FILE).is_file():
        state.positions_init, _ = ckpt.load_positions(directory / POSITIONS_FILE)
    if (directory / INIT_REPORT_FILE).is_file():
        state.init_report = json.loads((directory / INIT_REPORT_FILE).read_text())


def save_epoch_checkpoint(
    state: WorkerState,
    directory: Path,
    *,
    epoch: int,
    per_class_ap: torch.Tensor,
    class_names: list[str],
    last: bool,
) -> ray.train.Checkpoint:
    """Rank 0's checkpoint of `epoch`: the training state (weights, optimiser, schedule, EMA),
    the DCLS positions (initial and current) and the init report as small files of their own,
    the per-class AP and, after the last epoch, the weights as safetensors."""
    from audiosweep.models import dcls_positions

    model = ckpt.unwrap(state.model)
    ckpt.save_training_state(
        directory,
        model=model,
        optimizer=state.recipe.optimizer,
        scheduler=state.recipe.scheduler,
        scaler=state.recipe.scaler,
        epoch=epoch,
        extra={
            "best_map": state.best_map,
            **({EMA_STATE_KEY: state.ema.module.state_dict()} if state.ema else {}),
        },
    )
    ckpt.save_positions(directory, state.positions_init, dcls_positions(model))
    if state.init_report:
        (directory / INIT_REPORT_FILE).write_text(json.dumps(state.init_report, indent=2) + "\n")
    write_per_class_ap(directory / PER_CLASS_AP_FILE, class_names, per_class_ap)
    if last:
        ckpt.save_model_weights(model, directory / ckpt.MODEL_FILE)
        if state.ema is not None:
            ckpt.save_model_weights(state.ema.module, directory / ckpt.MODEL_EMA_FILE)
    return ray.train.Checkpoint.from_directory(directory)


def write_per_class_ap(path: Path, class_names: list[str], ap: torch.Tensor) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "display_name", "ap"])
        for i, (name, value) in enumerate(zip(class_names, ap.tolist(), strict=True)):
            writer.writerow([i, name, "" if math.isnan(value) else f"{value:.6f}"])
