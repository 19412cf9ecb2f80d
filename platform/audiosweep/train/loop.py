"""The Ray Train worker loop: one readable pass from shard to report.

Per epoch: waveforms from this worker's Ray Data shard → device → waveform augmentation → mel
front end (random erasing on the linear spectrogram) → mixup → model → loss → (accumulated)
optimizer step → per-iteration schedule; then evaluation on this worker's part of the eval split,
gathered so every eval clip counts once → metrics → checkpoint → ``ray.train.report``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.data.epoch_clock import EpochClock
from audiosweep.train import checkpoint as ckpt
from audiosweep.train.ema import EMA_STATE_KEY, WeightEma, create_ema
from audiosweep.train.gather import gather_rows, gather_strings
from audiosweep.train.pipeline import TrainingPipeline, build_pipeline
from audiosweep.train.seeding import derive_seed, seed_everything
from audiosweep.train.throughput import StepTimer, inference_throughput

PER_CLASS_AP_FILE = "per_class_ap.csv"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    # FastDcls2d runs its convolutions channels_last on CPU, so the layers after it get
    # channels_last gradients for contiguous parameters; DDP's reducer copies them into its
    # buckets (correct, a few KB per step) and warns once per worker and trial about it.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    cfg = TrialConfig.from_dict(config["trial"])
    num_classes: int = config["num_classes"]
    class_names: list[str] = config["class_names"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))

    from audiosweep.models import (
        count_dcls_positions,
        count_parameters,
        create_model_from_config,
        dcls_positions,
        initialise_model,
    )

    seed_everything(derive_seed(cfg.train.seed, "init"))  # same initial weights on every rank
    model = create_model_from_config(cfg, num_classes)
    restored = ray.train.get_checkpoint()
    # A resumed run's weights come from its own checkpoint: the initial ones are not fetched.
    init_report = (
        None
        if restored is not None
        else initialise_model(model, cfg.model.init, log=print if rank == 0 else None)
    )
    init_info = init_report.to_dict() if init_report is not None else {}
    positions_init = {k: v.detach().clone() for k, v in dcls_positions(model).items()}
    param_counts = {
        "params_total": count_parameters(model),
        "params_dcls_positions": count_dcls_positions(model),
    }
    model = ray.train.torch.prepare_model(model)
    pipe = build_pipeline(
        cfg,
        num_classes=num_classes,
        device=device,
        model=model,
        train_rows=config["train_rows"],
        world=world,
    )

    start_epoch, best_map = 0, float("nan")
    if restored is not None:
        with restored.as_directory() as directory:
            state = ckpt.load_training_state(Path(directory))
        ckpt.unwrap(model).load_state_dict(state["model"])
        pipe.optimizer.load_state_dict(state["optimizer"])
        pipe.scheduler.load_state_dict(state["scheduler"])
        if pipe.scaler is not None and state["scaler"]:
            pipe.scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        best_map = float(state["extra"].get("best_map", float("nan")))
        positions_init = state["extra"].get("positions_init", positions_init)
        init_info = state["extra"].get("init_report", init_info)
        if rank == 0:
            print(f"[audiosweep] resumed from checkpoint after epoch {start_epoch}")

    ema = create_ema(
        ckpt.unwrap(model),
        cfg.train.ema_decay,
        state["extra"].get(EMA_STATE_KEY) if restored is not None else None,
    )
    train_shard = ray.train.get_dataset_shard("train")
    eval_shard = ray.train.get_dataset_shard("eval")
    epoch_clock = EpochClock(config["epoch_clock"]) if config.get("epoch_clock") else None
    timer = StepTimer(warmup_steps=cfg.train.throughput_warmup_steps, device=device)

    for epoch in range(start_epoch, cfg.train.epochs):
        seed_everything(derive_seed(cfg.train.seed, "epoch", rank, epoch))
        if epoch_clock is not None:  # before iterating: the train split plans this epoch's order
            epoch_clock.set(epoch)
        t0 = time.perf_counter()
        train_loss = train_one_epoch(
            model, pipe, train_shard, cfg, epoch, rank, world, timer, ema=ema
        )
        last = epoch + 1 == cfg.train.epochs
        result = evaluate(
            model,
            pipe,
            eval_shard,
            cfg,
            device,
            num_classes,
            epoch,
            tta=last,
            ema=ema.module if ema is not None else None,
        )
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": pipe.optimizer.param_groups[0]["lr"],
            "train_samples_per_s": timer.samples_per_second * world,
            "epoch_seconds": time.perf_counter() - t0,
            # Rank 0's node: where the trial trained (its driver may sit on another node).
            "node_id": ray.get_runtime_context().get_node_id(),
            **param_counts,
            **{k: v for k, v in result.items() if not k.startswith("per_class_ap")},
        }
        if not math.isnan(metrics["eval_map"]):
            best_map = (
                metrics["eval_map"] if math.isnan(best_map) else max(best_map, metrics["eval_map"])
            )
        metrics["best_map"] = best_map
        if last and rank == 0:
            metrics.update(
                inference_throughput(
                    ckpt.unwrap(model),
                    batch=cfg.bench.batch,
                    n_mels=cfg.audio.n_mels,
                    frames=cfg.bench.frames,
                    device=device,
                    repeats=cfg.bench.repeats,
                    dtype=cfg.bench.dtype,
                )
            )
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                ckpt.save_training_state(
                    Path(tmp),
                    model=model,
                    optimizer=pipe.optimizer,
                    scheduler=pipe.scheduler,
                    scaler=pipe.scaler,
                    epoch=epoch,
                    extra={
                        "best_map": best_map,
                        "positions_init": positions_init,
                        "init_report": init_info,
                        **({EMA_STATE_KEY: ema.module.state_dict()} if ema else {}),
                        "positions_final": {
                            k: v.detach().cpu().clone()
                            for k, v in dcls_positions(ckpt.unwrap(model)).items()
                        },
                    },
                )
                write_per_class_ap(
                    Path(tmp) / PER_CLASS_AP_FILE, class_names, result["per_class_ap"]
                )
                if last:
                    ckpt.save_model_weights(model, Path(tmp) / ckpt.MODEL_FILE)
                    if ema is not None:
                        ckpt.save_model_weights(ema.module, Path(tmp) / ckpt.MODEL_EMA_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        if rank == 0:
            print(
                f"[audiosweep] epoch {epoch + 1}/{cfg.train.epochs} loss {train_loss:.4f} "
                f"{pipe.task.epoch_line(metrics)} "
                + (f"EMA {pipe.task.epoch_line(_suffixed(metrics, '_ema'))} " if ema else "")
                + f"lr {metrics['lr']:.2e} {metrics['epoch_seconds']:.1f}s"
            )


def train_one_epoch(
    model: nn.Module,
    pipe: TrainingPipeline,
    shard: Any,
    cfg: TrialConfig,
    epoch: int,
    rank: int,
    world: int,
    timer: StepTimer,
    ema: WeightEma | None = None,
) -> float:
    model.train()
    accum = pipe.accumulation_steps
    # Summed on the device: read back once per epoch, not once per step.
    loss_sum = torch.zeros((), device=pipe.device)
    steps = 0
    batches = iterate(
        shard,
        cfg.train.batch_size,
        pipe.device,
        shuffle_buffer=cfg.data.shuffle_buffer,
        shuffle_seed=derive_seed(cfg.train.seed, "shuffle", rank, epoch),
        drop_last=True,
    )
    pipe.optimizer.zero_grad(set_to_none=True)
    timer.begin_epoch()
    for step, batch in enumerate(batches):
        if (
            step >= pipe.batches_per_epoch
        ):  # identical step count on every rank keeps DDP in lockstep
            break
        spec, target = pipe.train_inputs(batch["waveform"], batch["target"])
        sync_now = (step + 1) % accum == 0
        no_sync = (
            model.no_sync
            if (hasattr(model, "no_sync") and not sync_now)
            else contextlib.nullcontext
        )
        with no_sync(), pipe.autocast():
            loss = pipe.loss_fn(model(spec), target)
        pipe.backward(loss / accum)
        if sync_now:
            pipe.step(model)
            if ema is not None:
                ema.update(ckpt.unwrap(model))
        loss_sum += loss.detach().float()
        steps += 1
        timer.step(spec.shape[0])
    timer.end_epoch()
    mean = loss_sum / steps if steps else torch.full((), float("nan"), device=pipe.device)
    return float(gather_rows(mean.reshape(1)).mean().item())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    pipe: TrainingPipeline,
    shard: Any,
    cfg: TrialConfig,
    device: torch.device,
    num_classes: int,
    epoch: int = 0,
    tta: bool = False,
    ema: nn.Module | None = None,
) -> dict[str, Any]:
    """Metrics of the plain predictions (``eval_*``), with ``tta`` also of the test-time
    augmented ones (``eval_*_tta``; SP4ASC evaluates those once, after training), and with
    ``ema`` the same for the averaged weights on the same batches (``..._ema``)."""
    # Eval shards differ in length across ranks, so the forward must not go through DDP, whose
    # forward broadcasts buffers (a collective a rank with fewer batches would never join).
    models = {"": ckpt.unwrap(model), **({"_ema": ema} if ema is not None else {})}
    for m in models.values():
        m.eval()
    rank = ray.train.get_context().get_world_rank()
    scores: dict[str, list[torch.Tensor]] = {}
    targets, ids = [], []
    batches = iterate(shard, cfg.train.eval_batch_size, device, drop_last=False)
    for index, batch in enumerate(batches):
        seed = derive_seed(cfg.train.seed, "tta", rank, epoch, index)
        for model_suffix, m in models.items():
            with pipe.autocast():
                views = pipe.predict(m, batch["waveform"], tta=tta, seed=seed)
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
    views = [""] + (["_tta"] if tta and pipe.has_tta else [])
    result: dict[str, Any] = {"eval_clips": len(all_ids)}
    for suffix in [view + model_suffix for model_suffix in models for view in views]:
        local = scores.get(suffix, [])
        gathered = gather_rows(torch.cat(local) if local else empty)
        metrics = pipe.task.metrics(all_targets, gathered)
        per_class_ap = metrics.pop("per_class_ap")
        if not suffix:
            result["per_class_ap"] = per_class_ap
        result.update({f"{k}{suffix}": v for k, v in metrics.items()})
    return result


def _suffixed(metrics: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The metrics that end in `suffix`, under their plain names."""
    return {k[: -len(suffix)]: v for k, v in metrics.items() if k.endswith(suffix)}


def iterate(
    shard: Any,
    batch_size: int,
    device: torch.device,
    *,
    shuffle_buffer: int | None = None,
    shuffle_seed: int | None = None,
    drop_last: bool,
):
    """Batches of a Ray Data shard as device tensors (clip ids stay a list of str)."""
    pin = device.type == "cuda"
    for batch in shard.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        drop_last=drop_last,
        local_shuffle_buffer_size=shuffle_buffer or None,
        local_shuffle_seed=shuffle_seed if shuffle_buffer else None,
    ):
        out: dict[str, Any] = {"clip_id": [str(c) for c in batch.get("clip_id", ())]}
        for key in ("waveform", "target"):
            out[key] = host_tensor(batch[key], pin=pin).to(device, non_blocking=pin)
        yield out


def host_tensor(array: np.ndarray, *, pin: bool) -> torch.Tensor:
    """A float32 CPU tensor of a batch column, copied only when it must be.

    Batches that view Ray's object store or Arrow buffers are read-only. For a GPU the pinned
    copy is the only host copy needed (the source is only read). On the CPU the tensor is the
    one the pipeline gets, so a read-only batch is copied once rather than aliased, and a
    writable, contiguous float32 batch is shared as is.
    """
    array = np.asarray(array, dtype=np.float32)  # no copy when it is float32 already
    if pin:
        with warnings.catch_warnings():  # torch warns on read-only arrays; pin_memory copies
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array).pin_memory()
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, dtype=np.float32)
    return torch.from_numpy(array)


def write_per_class_ap(path: Path, class_names: list[str], ap: torch.Tensor) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "display_name", "ap"])
        for i, (name, value) in enumerate(zip(class_names, ap.tolist(), strict=True)):
            writer.writerow([i, name, "" if math.isnan(value) else f"{value:.6f}"])
