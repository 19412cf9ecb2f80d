"""Everything a worker needs around the model, built once from the trial config: what it is fed
(`inputs.ModelInputs`), how it learns (`optimisation.Optimisation`) and its task's loss and
metrics (`task.Task`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.train.inputs import ModelInputs, build_inputs
from audiosweep.train.optimisation import Optimisation, build_optimisation
from audiosweep.train.task import Task, task_for


@dataclass
class TrainingPipeline:
    inputs: ModelInputs
    optim: Optimisation
    task: Task
    loss_fn: nn.Module

    @property
    def device(self) -> torch.device:
        return self.optim.device


def make_loss(cfg: TrialConfig) -> nn.Module:
    """The loss named by ``train.loss`` in the form the config's task (``data.task``) uses."""
    return task_for(cfg).loss(cfg)


def build_pipeline(
    cfg: TrialConfig,
    *,
    num_classes: int,
    device: torch.device,
    model: nn.Module,
    train_rows: int,
    world: int,
) -> TrainingPipeline:
    task = task_for(cfg)
    return TrainingPipeline(
        inputs=build_inputs(cfg, device=device, activation=task.activation),
        optim=build_optimisation(
            cfg, device=device, model=model, train_rows=train_rows, world=world
        ),
        task=task,
        loss_fn=task.loss(cfg),
    )
