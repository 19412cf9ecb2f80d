"""The training epoch, shared between Ray Train workers and the dataset that plans it.

Ray Train hands each worker one `DataIterator` for the whole run; every `iter_batches` call
re-executes the same dataset, in Ray Data's split coordinator (several workers) or in the
worker itself (one worker, `train.data_split`). Neither knows the epoch: Ray's execution
counter restarts after a worker-group restart, and a pass cut short by the loop does not
count. So the workers publish the epoch they are about to train in a small named actor,
before they iterate; a split coordinator starts an execution only once every worker has asked
for the epoch's data, and the datasource reads the epoch then, when it plans its read tasks.
The actor is created by the first worker that sets it and lives as long as that worker (each
worker that sets it holds a handle), so a restarted worker group starts a new one.

A single worker plans its dataset in its own process, so its clock need not be shared: an
unshared clock (``shared=False``) is a value in the process that sets it, and costs no actor
(a Python process of its own for every trial).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

NAMESPACE = "audiosweep"
# Ray ends a named actor once no handle to it is left: each setting process keeps one.
_HANDLES: dict[str, Any] = {}
# Unshared clocks: the epoch each was last set to in this process.
_LOCAL: dict[str, int] = {}


class _Clock:
    def __init__(self) -> None:
        self._epoch: int | None = None

    def set(self, epoch: int) -> None:
        self._epoch = epoch

    def get(self) -> int | None:
        return self._epoch


@dataclass(frozen=True)
class EpochClock:
    """A named epoch counter: workers :meth:`set` it, the train dataset :meth:`get`\\ s it;
    ``shared`` (an actor) when the dataset is planned in another process than the worker's."""

    name: str
    shared: bool = True

    @classmethod
    def new(cls, *, shared: bool = True) -> EpochClock:
        return cls(f"epoch-clock-{uuid.uuid4().hex}", shared)

    def open(self) -> Any:
        """This process's handle to the actor, created if no process has yet (None for an
        unshared clock). Returns without waiting for the actor to start: a worker opens the
        clock before it builds its model, so the actor's process starts meanwhile instead of
        when the first epoch waits on it."""
        import ray

        if not self.shared:
            return None
        actor = _HANDLES.get(self.name)
        if actor is None:
            actor = (
                ray.remote(num_cpus=0)(_Clock)
                .options(name=self.name, namespace=NAMESPACE, get_if_exists=True)
                .remote()
            )
            _HANDLES[self.name] = actor
        return actor

    def set(self, epoch: int) -> None:
        import ray

        if not self.shared:
            _LOCAL[self.name] = int(epoch)
            return
        ray.get(self.open().set.remote(int(epoch)))

    def get(self) -> int | None:
        """The epoch last set, or None when no worker has set one yet (for an unshared clock:
        none in this process)."""
        import ray

        if not self.shared:
            return _LOCAL.get(self.name)
        try:
            actor = ray.get_actor(self.name, namespace=NAMESPACE)
        except ValueError:
            return None
        return ray.get(actor.get.remote())
