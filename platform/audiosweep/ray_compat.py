"""Every private name of Ray that audiosweep relies on, in one place.

Written for ray==2.60.0 (the version pyproject.toml pins). Ray may change any of these between
releases without notice; on another version this module warns once, at import, naming itself,
and tests/test_ray_compat.py checks that each name still exists with the shape used here, so
an upgrade fails there, in one place, instead of at run time in a trial.

What is private, and why no public API does the job:

- Ray Train V2: `TorchTrainer.fit` builds its failure policy itself, and the policy (Ray's
  `DefaultFailurePolicy`) retries every worker-group failure. `fit_with_failure_policy` runs
  the trainer with the policy `PredicateFailurePolicy` instead, which never retries what its
  caller calls deterministic. A worker's exception is unwrapped
  (`user_exception`).
- Ray core: a local node bound to 127.0.0.1, the driver's node (for its logs folder) and the
  GCS cluster config (the node types an autoscaling cluster can grow to).
- Ray Data: the execution-callback hook and two executor fields it steps on, and the detached
  helper actors a sweep driver creates on the head.
- torch (the one private name outside Ray): the dispatch-mode base that counts a CPU training
  step's live tensor memory (`train/cost.py`).

Names that are only read for an optional behaviour (the cluster config, the helper actors,
the executor fields) fall back to Ray's own behaviour when missing; the Train names are
needed and fail loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import ray
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling import (
    DefaultFailurePolicy,
    FailureDecision,
)
from ray.train.v2._internal.execution.failure_handling.default import RETRYABLE_CONTROLLER_ERRORS

WRITTEN_FOR = "2.60.0"

if ray.__version__ != WRITTEN_FOR:
    warnings.warn(
        f"audiosweep/ray_compat.py was written for ray {WRITTEN_FOR}, and ray "
        f"{ray.__version__} is installed: run tests/test_ray_compat.py and update that module",
        stacklevel=2,
    )


# --- Ray Train V2 ------------------------------------------------------------------------


def user_exception(error: BaseException) -> BaseException:
    """The exception a worker's training function raised, unwrapped from the traceback
    carrier Ray Train sends back to the controller."""
    if isinstance(error, UserExceptionWithTraceback):
        return error._base_exc
    return error


def ray_retries_controller_error(error: BaseException) -> bool:
    """True for a controller failure that Ray Train retries by itself (without limit), such as
    a worker group that cannot start while the autoscaler brings nodes up."""
    return isinstance(error, RETRYABLE_CONTROLLER_ERRORS)


class PredicateFailurePolicy(DefaultFailurePolicy):
    """Ray Train's failure policy with two predicates over the `TrainingFailedError`:
    `never_retry` failures end the run at once; `also_retry` failures, which Ray would not
    retry, are retried up to `max_failures` times. Ray Train pickles the policy into its
    controller: give module-level functions."""

    def __init__(
        self,
        failure_config: Any,
        never_retry: Callable[[BaseException], bool],
        also_retry: Callable[[BaseException], bool],
    ) -> None:
        super().__init__(failure_config)
        self._never_retry = never_retry
        self._also_retry = also_retry
        self._extra_retries = 0

    def _is_retryable_error(self, training_failed_error) -> bool:
        if self._never_retry(training_failed_error):
            return False
        if self._also_retry(training_failed_error):
            return True
        return super()._is_retryable_error(training_failed_error)

    def make_decision(self, training_failed_error) -> FailureDecision:
        if self._also_retry(training_failed_error):
            self._extra_retries += 1
            limit = self.failure_config.max_failures
            if limit != -1 and self._extra_retries > limit:
                return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


def fit_with_failure_policy(trainer: Any, failure_policy: DefaultFailurePolicy) -> Any:
    """`TorchTrainer.fit` of ray 2.60.0, line for line, with `failure_policy` in place of the
    `DefaultFailurePolicy` it builds; returns the `Result` or raises the run's error."""
    from ray.train.v2._internal.execution.scaling_policy import create_scaling_policy
    from ray.train.v2._internal.util import ObjectRefWrapper

    result = trainer._initialize_and_run_controller(
        train_fn_ref=ObjectRefWrapper(trainer._get_train_func()),
        scaling_policy=create_scaling_policy(trainer.scaling_config),
        failure_policy=failure_policy,
        train_run_context=trainer.train_run_context,
        callbacks=trainer._create_default_callbacks(),
        validation_config=trainer.validation_config,
    )
    if result.error:
        raise result.error
    return result


# --- Ray core ------------------------------------------------------------------------------


def loopback_node_options() -> dict[str, Any]:
    """`ray.init` options that put a new local node, and so every port it opens, on
    127.0.0.1 (`_node_ip_address`: an underscored, unstable argument of `ray.init`)."""
    return {"_node_ip_address": "127.0.0.1"}


def driver_logs_dir() -> str | None:
    """The logs folder of the node this driver is connected to; None before `ray.init`."""
    node = ray._private.worker._global_node
    return node.get_logs_dir_path() if node is not None else None


def gcs_cluster_config() -> Any | None:
    """The cluster config the GCS holds (node group configs with their resources and
    max counts), or None when this Ray does not expose one."""
    try:
        from ray._private.state import state

        return state.get_cluster_config()
    except Exception:  # only a source of capacity among others: its absence is not an error
        return None


# --- Ray Data ------------------------------------------------------------------------------


def execution_callback_base() -> type:
    """Ray Data's `ExecutionCallback` (hooks: `before_execution_starts`, `on_execution_step`,
    ...), the base of the callbacks in data/execution_callbacks.py."""
    from ray.data._internal.execution.execution_callback import ExecutionCallback

    return ExecutionCallback


def executor_has_active_tasks(executor: Any) -> bool:
    """Whether any operator of a streaming executor has a task running (True when this Ray's
    executor does not say)."""
    topology = getattr(executor, "_topology", None)
    if topology is None:
        return True
    return any(op.num_active_tasks() for op in topology)


def refresh_zero_resource_limits(executor: Any) -> None:
    """Make a streaming executor re-read its resource limits at its next step if they are
    still zero (no answer from the autoscaling coordinator yet), instead of once a second."""
    manager = getattr(executor, "_resource_manager", None)
    limits = getattr(manager, "_global_limits", None)
    if limits is None or not hasattr(manager, "_global_limits_last_update_time"):
        return  # another Ray version: keep its own behaviour
    if not limits.cpu and not limits.object_store_memory:
        manager._global_limits_last_update_time = 0.0


def create_data_helper_actors() -> None:
    """Create Ray Data's detached helper actors (stats, autoscaling coordinator) from this
    process, so that they live on its node; nothing when this Ray has other helpers."""
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
        from ray.data._internal.stats import get_or_create_stats_actor
    except ImportError:
        return
    get_or_create_stats_actor()
    get_or_create_autoscaling_coordinator()


# --- torch ---------------------------------------------------------------------------------


def torch_dispatch_mode_base() -> type:
    """torch's `TorchDispatchMode`, the base of `train.cost`'s storage tracker. torch's
    "Extending PyTorch" notes document it, but under a private module name; it is the only hook
    that sees the ops autograd runs in a backward pass (a `TorchFunctionMode` does not)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    return TorchDispatchMode
