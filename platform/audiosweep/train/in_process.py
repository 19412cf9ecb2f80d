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

The loop reaches the run through `session.py`. This module imports neither torch nor the models.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.train import Checkpoint, Result
from ray.train.v2.api.exceptions import WorkerGroupError

from audiosweep.layout import CHECKPOINT_POINTER
from audiosweep.ray_cluster import data_console_quiet
from audiosweep.ray_compat import train_function
from audiosweep.storage import Folder, join, name_of
from audiosweep.train.failures import is_deterministic

CHECKPOINT_PREFIX = "checkpoint_"

_current: InProcessRun | None = None


def current() -> InProcessRun | None:
    """The run whose loop executes in this process now, if any."""
    return _current


@dataclass
class InProcessRun:
    folder: Folder  # the run folder: checkpoints go inside it
    shards: dict[str, Any]
    callbacks: list[Any] = field(default_factory=list)  # Ray Train `UserCallback`s
    keep: int | None = None
    checkpoint: Checkpoint | None = None  # to resume from, then the last one persisted
    metrics: dict[str, Any] | None = None

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        persisted = None
        if checkpoint is not None:
            name = CHECKPOINT_PREFIX + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
            self.folder.upload_folder(Path(checkpoint.path), name)
            persisted = self.checkpoint = Checkpoint(join(self.folder.location, name))
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


def fit_in_process(trainer: Any, run_dir: str) -> Result:
    """Run `trainer`'s (a one-worker `TorchTrainer`) loop here, as Ray Train would run it."""
    global _current
    run_config = trainer.run_config
    limit = run_config.failure_config.max_failures
    folder = Folder(run_dir)
    failures = 0
    while True:
        shards = trainer.data_config.configure(
            trainer.datasets, world_size=1, worker_handles=[None], worker_node_ids=[None]
        )[0]
        run = InProcessRun(
            folder,
            shards,
            callbacks=list(run_config.callbacks or []),
            keep=run_config.checkpoint_config.num_to_keep,
            checkpoint=last_checkpoint(folder),
        )
        _current = run
        try:
            with data_console_quiet():
                value = train_function(trainer)()
        except Exception as err:
            line = f"{type(err).__name__}: {' '.join(str(err).split())}"
            if is_deterministic(err) or (limit != -1 and failures >= limit):
                raise WorkerGroupError(f"[rank 0] {line}", {0: err}) from err
            failures += 1
            print(f"[audiosweep] run failed ({line}); retry {failures} of {limit}")
            continue
        finally:
            _current = None
        return Result(
            metrics=run.metrics,
            checkpoint=run.checkpoint,
            error=None,
            path=run_dir,
            return_value=value,
        )
