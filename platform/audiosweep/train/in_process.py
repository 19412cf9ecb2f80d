"""A one-worker trial run in its caller's process (``train.in_process``).

Ray Train runs a trial through a controller actor, one actor per worker and actors for its
datasets, placement group, synchronisation and Tune reports: on a 2-core machine their
start-up and imports are about a third of a demo trial's CPU time (docs/BENCHMARKS.md, "Fixed
costs"). A trial with one worker needs none of them, so its caller (the Tune trial's actor,
which Tune reuses from trial to trial, or `audiosweep train`) runs the worker loop itself and
does for it what Ray Train would:

- the datasets are prepared as `ExactEvalDataConfig` prepares them for a single worker;
- each reported checkpoint is copied into the run folder (``checkpoint_<time>``, as Ray Train
  names them) before the run's callbacks see the report, which point `final_checkpoint.txt` at
  it; older ones beyond ``CheckpointConfig.num_to_keep`` are then removed;
- the run resumes from the checkpoint `final_checkpoint.txt` names;
- a failure is retried from that checkpoint up to ``FailureConfig.max_failures`` times, unless it
  is deterministic (`failures.py`); the error that ends the run is a `WorkerGroupError`, as a
  Ray Train run's is.

The loop gets an `InProcessSession` where a Ray Train worker gets a `RayTrainSession`. This
module imports neither torch nor the models.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.train import Checkpoint, Result
from ray.train.v2.api.exceptions import WorkerGroupError

from audiosweep.layout import CHECKPOINT_POINTER
from audiosweep.ray_cluster import data_console_quiet
from audiosweep.storage import Folder, join, name_of
from audiosweep.train.failures import is_deterministic
from audiosweep.train.session import WorkerSession

CHECKPOINT_PREFIX = "checkpoint_"


class InProcessSession(WorkerSession):
    """Rank 0 of 1, in the caller's process: persists and prunes checkpoints, runs callbacks."""

    def __init__(
        self,
        folder: Folder,
        shards: dict[str, Any],
        *,
        callbacks: list[Any] | None = None,  # Ray Train `UserCallback`s
        keep: int | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.folder = folder  # the run folder: checkpoints go inside it
        self.shards = shards
        self.callbacks = list(callbacks or [])
        self.keep = keep
        self.last_checkpoint = checkpoint  # to resume from, then the last one persisted
        self.metrics: dict[str, Any] | None = None

    def checkpoint(self) -> Checkpoint | None:
        return self.last_checkpoint

    def dataset_shard(self, name: str) -> Any:
        return self.shards[name]

    def device(self) -> Any:
        import torch

        # A trial that reserved a GPU sees only that one (Ray sets CUDA_VISIBLE_DEVICES).
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")

    def prepare_model(self, model: Any) -> Any:
        import torch

        device = self.device()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return model.to(device)

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        persisted = None
        if checkpoint is not None:
            name = CHECKPOINT_PREFIX + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
            self.folder.upload_folder(Path(checkpoint.path), name)
            persisted = self.last_checkpoint = Checkpoint(join(self.folder.location, name))
        self.metrics = metrics
        for callback in self.callbacks:
            callback.after_report(run_context=None, metrics=[metrics], checkpoint=persisted)
        if persisted is not None and self.keep:
            for old in checkpoint_names(self.folder)[: -self.keep]:
                self.folder.child(old).delete()


def checkpoint_names(folder: Folder) -> list[str]:
    """The run's checkpoint folders, oldest first (their names hold the time)."""
    return [n for n in folder.subfolders() if n.startswith(CHECKPOINT_PREFIX)]


def last_checkpoint(folder: Folder) -> Checkpoint | None:
    """The checkpoint `final_checkpoint.txt` names: written once it was persisted whole."""
    if not folder.exists(CHECKPOINT_POINTER):
        return None
    name = name_of(folder.read_text(CHECKPOINT_POINTER).strip())
    if not name.startswith(CHECKPOINT_PREFIX) or not folder.exists(name):
        return None
    return Checkpoint(join(folder.location, name))


def fit_in_process(
    trainer: Any, run_dir: str, loop: Callable[[dict[str, Any], WorkerSession], Any]
) -> Result:
    """Run `loop` (the worker loop, given `trainer.train_loop_config` and a session) here, with
    the run config, datasets and data config of `trainer` (a one-worker `TorchTrainer`), as Ray
    Train would run it."""
    run_config = trainer.run_config
    limit = run_config.failure_config.max_failures
    folder = Folder(run_dir)
    failures = 0
    while True:
        shards = trainer.data_config.configure(
            trainer.datasets, world_size=1, worker_handles=[None], worker_node_ids=[None]
        )[0]
        session = InProcessSession(
            folder,
            shards,
            callbacks=run_config.callbacks,
            keep=run_config.checkpoint_config.num_to_keep,
            checkpoint=last_checkpoint(folder),
        )
        try:
            with data_console_quiet():
                value = loop(trainer.train_loop_config, session)
        except Exception as err:
            line = f"{type(err).__name__}: {' '.join(str(err).split())}"
            if is_deterministic(err) or (limit != -1 and failures >= limit):
                raise WorkerGroupError(f"[rank 0] {line}", {0: err}) from err
            failures += 1
            print(f"[audiosweep] run failed ({line}); retry {failures} of {limit}")
            continue
        return Result(
            metrics=session.metrics,
            checkpoint=session.last_checkpoint,
            error=None,
            path=run_dir,
            return_value=value,
        )
