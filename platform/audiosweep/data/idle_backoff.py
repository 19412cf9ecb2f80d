"""Keep an idle Ray Data executor from spinning.

Ray 2.60's streaming executor blocks in ``ray.wait`` (up to 0.1 s) at each scheduling step only
while some task is running. Once every task is done and the output queue is full (the consumer
is the bottleneck, as a training loop should be), the loop runs again at once, step after step:
a train split's coordinator measured here used about a quarter of a core that way for the whole
epoch, beside a Train worker with three quarters of one. `IdleBackoff` sleeps briefly at such
steps; a block the consumer frees is handed on at most that much later, far less than one
training step takes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ray.data._internal.execution.execution_callback import ExecutionCallback

if TYPE_CHECKING:
    import ray.data

IDLE_SLEEP_S = 0.05


class IdleBackoff(ExecutionCallback):
    def on_execution_step(self, executor: Any) -> None:
        topology = getattr(executor, "_topology", None) or {}
        if not any(op.num_active_tasks() for op in topology):
            time.sleep(IDLE_SLEEP_S)


def with_idle_backoff(ds: ray.data.Dataset) -> ray.data.Dataset:
    """`ds`, its executions backing off while idle (the callback travels in its context to
    wherever Ray runs them, e.g. a split coordinator)."""
    classes = ds.context.custom_execution_callback_classes
    if IdleBackoff not in classes:
        ds.context.custom_execution_callback_classes = [*classes, IdleBackoff]
    return ds
