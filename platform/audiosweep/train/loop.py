"""The worker loop, top to bottom: build (or resume), then per epoch train, evaluate, report.

One step: waveforms from this worker's Ray Data shard → device → waveform augmentation → mel
front end (random erasing on the linear spectrogram) → mixup → model → loss → backward, and at
the end of each accumulation: gradient clipping → optimiser step → per-iteration schedule step
→ DCLS position clamp → EMA update. After the epoch: evaluation on this worker's part of the
eval split, gathered so every eval clip counts once → metrics → rank 0's checkpoint →
`WorkerSession.report`. The recipe's pieces (front end, mixup, loss, optimiser, schedule) are
built in `recipe.py`; what carries over epochs and into checkpoints in `worker_state.py`.

Ray Train starts `train_loop_per_worker(config)` in each worker; a trial run in its caller's
process calls `run_worker(config, session)` with its own session (`in_process.py`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray
import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.data.epoch_clock import EpochClock
from audiosweep.models import clamp_dcls_positions
from audiosweep.train import checkpoint as ckpt
from audiosweep.train.cost import clip_shape, cost_figures
from audiosweep.train.ema import WeightEma
from audiosweep.train.recipe import Recipe
from audiosweep.train.seeding import derive_seed, seed_everything
from audiosweep.train.session import RayTrainSession, WorkerSession
from audiosweep.train.throughput import StepTimer
from audiosweep.train.worker_data import gather_rows, gather_strings, iterate
from audiosweep.train.worker_state import WorkerState, build_worker_state, save_epoch_checkpoint

__all__ = ["run_worker", "train_loop_per_worker"]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The function Ray Train runs in each of a trial's workers."""
    run_worker(config, RayTrainSession())


def run_worker(config: dict[str, Any], session: WorkerSession) -> None:
    # FastDcls2d runs its convolutions channels_last on CPU, so the layers after it get
    # channels_last gradients for contiguous parameters; DDP's reducer copies them into its
    # buckets (correct, a few KB per step) and warns once per worker and trial about it.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    cfg = TrialConfig.from_dict(config["trial"])
    num_classes: int = config["num_classes"]
    rank, world = session.rank, session.world
    device = session.device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    # With several workers the epoch clock and the shards' split coordinators are actors of
    # their own: asked for first, their processes start while the model is built.
    epoch_clock: EpochClock | None = config.get("epoch_clock")
    if epoch_clock is not None:
        epoch_clock.open()
    train_shard = session.dataset_shard("train")
    eval_shard = session.dataset_shard("eval")
    val_shard = session.dataset_shard("val") if cfg.data.val_split else None

    state = build_worker_state(
        cfg,
        session,
        num_classes=num_classes,
        train_rows=config["train_rows"],
        log=print if rank == 0 else None,
    )
    timer = StepTimer(warmup_steps=cfg.train.throughput_warmup_steps, device=device)

    for epoch in range(state.next_epoch, cfg.train.epochs):
        seed_everything(derive_seed(cfg.train.seed, "epoch", rank, epoch))
        if epoch_clock is not None:  # before iterating: the train split plans this epoch's order
            epoch_clock.set(epoch)
        started = time.perf_counter()
        last = epoch + 1 == cfg.train.epochs
        batches = iterate(
            train_shard,
            cfg.train.batch_size,
            device,
            shuffle_buffer=cfg.data.shuffle_buffer,
            shuffle_seed=derive_seed(cfg.train.seed, "shuffle", rank, epoch),
            drop_last=True,
        )
        train_loss = train_one_epoch(state.model, state.recipe, batches, timer=timer, ema=state.ema)
        result = evaluate(
            state.model,
            state.recipe,
            eval_shard,
            cfg=cfg,
            num_classes=num_classes,
            rank=rank,
            epoch=epoch,
            tta=last,
            ema=state.ema.module if state.ema is not None else None,
        )
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": state.recipe.optimizer.param_groups[0]["lr"],
            "train_samples_per_s": timer.samples_per_second * world,
            "epoch_seconds": time.perf_counter() - started,
            # Rank 0's node: where the trial trained (its driver may sit on another node).
            "node_id": ray.get_runtime_context().get_node_id(),
            **state.param_counts,
            **{k: v for k, v in result.items() if not k.startswith("per_class_ap")},
        }
        if val_shard is not None:
            # Selection reads the validation split; the eval scores above are the curve only.
            selected = evaluate(
                state.model,
                state.recipe,
                val_shard,
                cfg=cfg,
                num_classes=num_classes,
                rank=rank,
                epoch=epoch,
            )
            metrics.update(
                {
                    "val_" + k.removeprefix("eval_"): v
                    for k, v in selected.items()
                    if not k.startswith("per_class_ap")
                }
            )
        metrics["best_map"] = state.track_best(
            metrics["val_map"] if val_shard is not None else metrics["eval_map"]
        )
        if last and rank == 0:
            # What a clip and a step cost, which no other trial's load changes. Speed is
            # measured once per sweep, side by side, when the trials are done
            # (sweep/throughput.py): timed here it would share the cores with other trials.
            metrics.update(
                cost_figures(
                    ckpt.unwrap(state.model),
                    batch=cfg.train.batch_size,
                    clip_shape=clip_shape(cfg),
                    num_classes=num_classes,
                )
            )
        report(session, state, cfg, metrics, result, config["class_names"], epoch=epoch, last=last)


def train_one_epoch(
    model: nn.Module,
    recipe: Recipe,
    batches: Iterable[dict[str, Any]],
    *,
    timer: StepTimer,
    ema: WeightEma | None = None,
) -> float:
    """One epoch of optimiser steps; the mean training loss of the epoch over all workers."""
    model.train()
    optimizer, scaler, accum = recipe.optimizer, recipe.scaler, recipe.accumulation_steps
    # Summed on the device: read back once per epoch, not once per step.
    loss_sum = torch.zeros((), device=recipe.device)
    steps = 0
    optimizer.zero_grad(set_to_none=True)
    timer.begin_epoch()
    for step, batch in enumerate(batches):
        if step >= recipe.batches_per_epoch:  # every rank steps as often: DDP stays in lockstep
            break
        spec, target = recipe.inputs.train_inputs(batch["waveform"], batch["target"])
        step_now = (step + 1) % accum == 0
        # Within an accumulation DDP need not all-reduce: a forward under `no_sync` leaves the
        # gradients of its backward local, and the last forward's backward reduces the sum.
        no_sync = model.no_sync() if hasattr(model, "no_sync") and not step_now else None
        with no_sync or contextlib.nullcontext(), recipe.autocast():
            loss = recipe.loss_fn(model(spec), target)
        # Backward outside autocast, as torch.amp recommends; scaled when float16 may underflow.
        if scaler is not None:
            scaler.scale(loss / accum).backward()
        else:
            (loss / accum).backward()
        if step_now:
            if recipe.clip_grad:
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not scaled ones
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)  # skips the step when the gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            recipe.scheduler.step()  # per iteration: warm-up and cosine decay in steps
            # Keep learned kernel positions inside the dilated kernel, as dcls's recipe does.
            with torch.no_grad():
                clamp_dcls_positions(model)
            if ema is not None:
                ema.update(ckpt.unwrap(model))
        loss_sum += loss.detach().float()
        steps += 1
        timer.step(spec.shape[0])
    timer.end_epoch()
    mean = loss_sum / steps if steps else torch.full((), float("nan"), device=recipe.device)
    return float(gather_rows(mean.reshape(1)).mean().item())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    recipe: Recipe,
    shard: Any,
    *,
    cfg: TrialConfig,
    num_classes: int,
    rank: int = 0,
    epoch: int = 0,
    tta: bool = False,
    ema: nn.Module | None = None,
) -> dict[str, Any]:
    """Metrics of the plain predictions (``eval_*``) on every eval clip once, gathered over the
    workers; with ``tta`` also of the test-time augmented ones (``eval_*_tta``; SP4ASC evaluates
    those once, after training), and with ``ema`` the same for the averaged weights on the same
    batches (``..._ema``). The per-class AP of the plain predictions is ``per_class_ap``."""
    # Eval shards differ in length across ranks, so the forward must not go through DDP, whose
    # forward broadcasts buffers (a collective a rank with fewer batches would never join).
    models = {"": ckpt.unwrap(model), **({"_ema": ema} if ema is not None else {})}
    for m in models.values():
        m.eval()
    scores: dict[str, list[torch.Tensor]] = {}
    targets, ids = [], []
    device = recipe.device
    batches = iterate(shard, cfg.train.eval_batch_size, device, drop_last=False)
    for index, batch in enumerate(batches):
        seed = derive_seed(cfg.train.seed, "tta", rank, epoch, index)
        for model_suffix, m in models.items():
            with recipe.autocast():
                views = recipe.inputs.predict(m, batch["waveform"], tta=tta, seed=seed)
            for view_suffix, probs in views.items():
                scores.setdefault(view_suffix + model_suffix, []).append(probs.float())
        targets.append(batch["target"].float())
        ids.extend(batch["clip_id"])
    empty = torch.zeros(0, num_classes, device=device)
    all_targets = gather_rows(torch.cat(targets) if targets else empty)
    all_ids = gather_strings(ids)
    if len(set(all_ids)) != len(all_ids):
        raise RuntimeError(f"evaluation saw {len(all_ids) - len(set(all_ids))} duplicate clips")
    # Every rank holds the same keys (TTA on or off, EMA or not), so the gathers below pair up.
    views = [""] + (["_tta"] if tta and recipe.inputs.has_tta else [])
    result: dict[str, Any] = {"eval_clips": len(all_ids)}
    for suffix in [view + model_suffix for model_suffix in models for view in views]:
        local = scores.get(suffix, [])
        gathered = gather_rows(torch.cat(local) if local else empty)
        metrics = recipe.task.metrics(all_targets, gathered)
        per_class_ap = metrics.pop("per_class_ap")
        if not suffix:
            result["per_class_ap"] = per_class_ap
        result.update({f"{k}{suffix}": v for k, v in metrics.items()})
    return result


def report(
    session: WorkerSession,
    state: WorkerState,
    cfg: TrialConfig,
    metrics: dict[str, Any],
    result: dict[str, Any],
    class_names: list[str],
    *,
    epoch: int,
    last: bool,
) -> None:
    """The epoch's metrics with rank 0's checkpoint to the run, and rank 0's line."""
    rank = session.rank
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
        task = state.recipe.task
        ema = f"EMA {task.epoch_line(_suffixed(metrics, '_ema'))} " if state.ema else ""
        print(
            f"[audiosweep] epoch {epoch + 1}/{cfg.train.epochs} loss {metrics['train_loss']:.4f} "
            f"{task.epoch_line(metrics)} {ema}"
            f"lr {metrics['lr']:.2e} {metrics['epoch_seconds']:.1f}s"
        )


def _suffixed(metrics: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The metrics that end in `suffix`, under their plain names."""
    return {k[: -len(suffix)]: v for k, v in metrics.items() if k.endswith(suffix)}
