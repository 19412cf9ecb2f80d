"""The Ray Train worker loop, top to bottom: build (or resume), then per epoch train, evaluate,
report.

Per epoch: waveforms from this worker's Ray Data shard → device → waveform augmentation → mel
front end (random erasing on the linear spectrogram) → mixup → model → loss → (accumulated)
optimizer step → per-iteration schedule (`epoch.py`); then evaluation on this worker's part of
the eval split, gathered so every eval clip counts once (`evaluation.py`) → metrics →
checkpoint (`worker_state.py`) → ``ray.train.report`` (through `session.py`).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import ray
import torch

from audiosweep.config import TrialConfig
from audiosweep.data.epoch_clock import EpochClock
from audiosweep.train import checkpoint as ckpt
from audiosweep.train import session
from audiosweep.train.epoch import train_batches, train_one_epoch
from audiosweep.train.evaluation import evaluate
from audiosweep.train.seeding import derive_seed, seed_everything
from audiosweep.train.throughput import StepTimer, inference_throughput
from audiosweep.train.worker_state import WorkerState, build_worker_state, save_epoch_checkpoint

__all__ = ["train_loop_per_worker"]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    # FastDcls2d runs its convolutions channels_last on CPU, so the layers after it get
    # channels_last gradients for contiguous parameters; DDP's reducer copies them into its
    # buckets (correct, a few KB per step) and warns once per worker and trial about it.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    cfg = TrialConfig.from_dict(config["trial"])
    num_classes: int = config["num_classes"]
    rank, world = session.world_rank_and_size()
    device = session.get_device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    log = print if rank == 0 else None
    # With several workers the epoch clock and the shards' split coordinators are actors of
    # their own: asked for first, their processes start while the model is built.
    epoch_clock: EpochClock | None = config.get("epoch_clock")
    if epoch_clock is not None:
        epoch_clock.open()
    train_shard = session.get_dataset_shard("train")
    eval_shard = session.get_dataset_shard("eval")

    state = build_worker_state(
        cfg,
        num_classes=num_classes,
        train_rows=config["train_rows"],
        world=world,
        device=device,
        log=log,
    )
    timer = StepTimer(warmup_steps=cfg.train.throughput_warmup_steps, device=device)

    for epoch in range(state.next_epoch, cfg.train.epochs):
        seed_everything(derive_seed(cfg.train.seed, "epoch", rank, epoch))
        if epoch_clock is not None:  # before iterating: the train split plans this epoch's order
            epoch_clock.set(epoch)
        started = time.perf_counter()
        last = epoch + 1 == cfg.train.epochs
        batches = train_batches(train_shard, cfg, device, rank=rank, epoch=epoch)
        train_loss = train_one_epoch(state.model, state.pipe, batches, timer=timer, ema=state.ema)
        result = evaluate(
            state.model,
            state.pipe,
            eval_shard,
            cfg=cfg,
            num_classes=num_classes,
            epoch=epoch,
            tta=last,
            ema=state.ema.module if state.ema is not None else None,
        )
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": state.pipe.optim.optimizer.param_groups[0]["lr"],
            "train_samples_per_s": timer.samples_per_second * world,
            "epoch_seconds": time.perf_counter() - started,
            # Rank 0's node: where the trial trained (its driver may sit on another node).
            "node_id": ray.get_runtime_context().get_node_id(),
            **state.param_counts,
            **{k: v for k, v in result.items() if not k.startswith("per_class_ap")},
        }
        metrics["best_map"] = state.track_best(metrics["eval_map"])
        if last and rank == 0:
            metrics.update(_inference_throughput(state, cfg, device))
        report(
            state, cfg, metrics, result, config["class_names"], epoch=epoch, last=last, rank=rank
        )


def report(
    state: WorkerState,
    cfg: TrialConfig,
    metrics: dict[str, Any],
    result: dict[str, Any],
    class_names: list[str],
    *,
    epoch: int,
    last: bool,
    rank: int,
) -> None:
    """The epoch's metrics with rank 0's checkpoint to the run (``ray.train.report``), and its
    line."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = (
            save_epoch_checkpoint(
                state,
                Path(tmp),
                epoch=epoch,
                per_class_ap=result["per_class_ap"],
                class_names=class_names,
                last=last,
            )
            if rank == 0
            else None
        )
        session.report(metrics, checkpoint)
    if rank == 0:
        task = state.pipe.task
        ema = f"EMA {task.epoch_line(_suffixed(metrics, '_ema'))} " if state.ema else ""
        print(
            f"[audiosweep] epoch {epoch + 1}/{cfg.train.epochs} loss {metrics['train_loss']:.4f} "
            f"{task.epoch_line(metrics)} {ema}"
            f"lr {metrics['lr']:.2e} {metrics['epoch_seconds']:.1f}s"
        )


def _inference_throughput(
    state: WorkerState, cfg: TrialConfig, device: torch.device
) -> dict[str, Any]:
    return inference_throughput(
        ckpt.unwrap(state.model),
        batch=cfg.bench.batch,
        n_mels=cfg.audio.n_mels,
        frames=cfg.bench.frames,
        device=device,
        repeats=cfg.bench.repeats,
        dtype=cfg.bench.dtype,
    )


def _suffixed(metrics: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The metrics that end in `suffix`, under their plain names."""
    return {k[: -len(suffix)]: v for k, v in metrics.items() if k.endswith(suffix)}
