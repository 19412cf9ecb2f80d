"""Deterministic worker failures are raised at once; lost workers are retried."""

from __future__ import annotations

from ray.exceptions import ActorDiedError, RaySystemError, RayTaskError
from ray.train import FailureConfig
from ray.train.v2._internal.exceptions import (
    UserExceptionWithTraceback,
    WorkerGroupStartupTimeoutError,
)
from ray.train.v2._internal.execution.failure_handling import FailureDecision
from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

from audiosweep.config import ConfigError
from audiosweep.train.failures import (
    DeterministicFailurePolicy,
    deterministic_reason,
    is_deterministic,
)


def group_error(*errors: BaseException) -> WorkerGroupError:
    wrapped = {rank: UserExceptionWithTraceback(e, "tb") for rank, e in enumerate(errors)}
    return WorkerGroupError("workers failed", wrapped)


def test_is_deterministic():
    assert is_deterministic(UserExceptionWithTraceback(ValueError("bad shape"), ""))
    assert is_deterministic(ConfigError("bad key"))
    assert not is_deterministic(UserExceptionWithTraceback(RuntimeError("Connection closed"), ""))
    assert not is_deterministic(ActorDiedError())


def test_a_bug_on_one_rank_is_raised_without_retry():
    policy = DeterministicFailurePolicy(FailureConfig(max_failures=3))
    error = group_error(ValueError("shape mismatch"), RuntimeError("gloo: connection closed"))
    assert policy.make_decision(error) == FailureDecision.RAISE
    assert deterministic_reason(error) == "ValueError: shape mismatch"


def test_lost_workers_are_retried_up_to_max_failures():
    policy = DeterministicFailurePolicy(FailureConfig(max_failures=2))
    lost = WorkerGroupError("worker died", {0: ActorDiedError()})
    assert deterministic_reason(lost) is None
    assert policy.make_decision(lost) == FailureDecision.RETRY
    assert policy.make_decision(lost) == FailureDecision.RETRY
    assert policy.make_decision(lost) == FailureDecision.RAISE


def _startup_error(cause: BaseException) -> ControllerError:
    """What the controller raises when a new worker's `init_train_context` task fails: a
    RayTaskError from the worker process wrapping the cause."""
    task_error = RayTaskError("init_train_context", "Traceback ...", cause, "RayTrainWorker")
    return ControllerError(task_error)


def test_a_system_error_while_workers_start_is_retried_up_to_max_failures():
    policy = DeterministicFailurePolicy(FailureConfig(max_failures=2))
    error = _startup_error(RaySystemError("[Errno 2] No such file or directory"))
    assert policy.make_decision(error) == FailureDecision.RETRY
    assert policy.make_decision(error) == FailureDecision.RETRY
    assert policy.make_decision(error) == FailureDecision.RAISE


def test_a_user_error_while_workers_start_is_raised_and_startup_timeouts_wait():
    policy = DeterministicFailurePolicy(FailureConfig(max_failures=2))
    assert policy.make_decision(_startup_error(ValueError("bad split"))) == FailureDecision.RAISE
    # Ray's own retries for an autoscaler still bringing nodes up stay unlimited.
    waiting = ControllerError(WorkerGroupStartupTimeoutError(num_workers=2))
    assert all(policy.make_decision(waiting) == FailureDecision.RETRY for _ in range(5))
