"""Ray Data execution callbacks that every dataset `read_split` returns carries in its context.

Two behaviours of Ray 2.60's streaming executor cost the reader throughput or CPU here:

- **Cold-start limits.** An execution asks Ray Data's autoscaling coordinator (an actor) for
  the cluster's resources and re-reads its resource limits once a second. Until the first
  answer arrives its limits are zero, so every operator runs one task at a time: for the whole
  first second of every pass (every epoch, every evaluation). `PromptResourceLimits` re-reads
  the limits at each scheduling step of that first second while they are still zero, so they
  take effect as soon as the coordinator answers.
- **Idle spinning.** The executor blocks in ``ray.wait`` (up to 0.1 s) at each scheduling step
  only while some task is running. Once every task is done and the output queue is full (the
  consumer is the bottleneck, as a training loop should be), the loop runs again at once, step
  after step: a train split's coordinator measured here used about a quarter of a core that way
  for the whole epoch, beside a Train worker with three quarters of one. `IdleBackoff` sleeps
  briefly at such steps; a block the consumer frees is handed on at most that much later, far
  less than one training step takes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from audiosweep.ray_compat import (
    execution_callback_base,
    executor_has_active_tasks,
    refresh_zero_resource_limits,
)

if TYPE_CHECKING:
    import ray.data

IDLE_SLEEP_S = 0.05
# Ray's own refresh interval (ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S in Ray 2.60).
COLD_START_S = 1.0


ExecutionCallback = execution_callback_base()


class IdleBackoff(ExecutionCallback):
    def on_execution_step(self, executor: Any) -> None:
        if not executor_has_active_tasks(executor):
            time.sleep(IDLE_SLEEP_S)


class PromptResourceLimits(ExecutionCallback):
    """Re-read an execution's resource limits at every step of its first second while they
    are zero (the coordinator has not answered yet), instead of once a second."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def before_execution_starts(self, executor: Any) -> None:
        self._started = time.monotonic()

    def on_execution_step(self, executor: Any) -> None:
        if time.monotonic() - self._started > COLD_START_S:
            return
        refresh_zero_resource_limits(executor)


CALLBACKS = (PromptResourceLimits, IdleBackoff)


def with_execution_callbacks(ds: ray.data.Dataset) -> ray.data.Dataset:
    """`ds`, its executions running `CALLBACKS` (they travel in its context to wherever Ray
    runs them, e.g. a split coordinator)."""
    classes = list(ds.context.custom_execution_callback_classes)
    missing = [c for c in CALLBACKS if c not in classes]
    if missing:
        ds.context.custom_execution_callback_classes = [*classes, *missing]
    return ds
