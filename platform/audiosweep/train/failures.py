"""Ray Train's failure policy, except that deterministic failures are not retried.

Ray 2.60's default policy retries every worker-group failure up to `max_failures` times. That
is right for a lost node or a dead process, which a restart from the last checkpoint mends, and
wrong for a bug or a bad value in the user's own code, which fails again the same way after
each restart. A failure is deterministic when any worker raised, from the training function, an
`audiosweep` `UserError` or one of Python's programming errors below; the other ranks' errors
are then collateral (a collective whose peer left).

Ray 2.60 also gives up at once when a new worker group fails to start for a reason of Ray's
own that it does not wrap as a startup failure: a worker whose arguments fail to deserialise
with a system error (seen on the simulated cluster after a node loss, the new worker's
working directory gone), or a worker process lost while it initialises. A fresh worker group
mends those, so they are retried too, up to `max_failures` times, while the startup errors Ray
retries itself (an autoscaler still bringing nodes up) keep their unlimited retries.

The policy is chosen where `TorchTrainer.fit` builds it, so `trainer.TrialTrainer.fit` repeats
that method's few lines with this policy (the internals are those of the pinned ray==2.60.0).
Ray Train unpickles the policy in its controller, a fresh process per trial: this module imports
neither torch nor the models.
"""

from __future__ import annotations

from ray.exceptions import RayActorError, RaySystemError
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling import (
    DefaultFailurePolicy,
    FailureDecision,
)
from ray.train.v2._internal.execution.failure_handling.default import RETRYABLE_CONTROLLER_ERRORS
from ray.train.v2.api.exceptions import ControllerError, TrainingFailedError, WorkerGroupError

from audiosweep.errors import UserError

DETERMINISTIC = (
    UserError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    ZeroDivisionError,
    NameError,
)


def is_deterministic(error: BaseException) -> bool:
    """True for an error that a restart would raise again."""
    if isinstance(error, UserExceptionWithTraceback):
        error = error._base_exc
    return isinstance(error, DETERMINISTIC)


def deterministic_reason(error: TrainingFailedError) -> str | None:
    """The first deterministic worker error of a failed run, on one line; None if none."""
    if not isinstance(error, WorkerGroupError):
        return None
    for failure in error.worker_failures.values():
        if is_deterministic(failure):
            base = getattr(failure, "_base_exc", failure)
            return f"{type(base).__name__}: {' '.join(str(base).split())}"[:500]
    return None


def _causes(error: BaseException | None):
    """`error`, then what caused it: Ray task errors' `cause`, Python's `__cause__`."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = getattr(error, "cause", None) or error.__cause__


def is_system_startup_failure(error: TrainingFailedError) -> bool:
    """A controller error raised by Ray's own machinery (a system error or a lost process,
    no deterministic error among its causes) that Ray does not retry by itself."""
    if not isinstance(error, ControllerError):
        return False
    if isinstance(error.controller_failure, RETRYABLE_CONTROLLER_ERRORS):
        return False
    causes = list(_causes(error.controller_failure))
    if any(is_deterministic(c) for c in causes):
        return False
    return any(isinstance(c, (RaySystemError, RayActorError)) for c in causes)


def is_deterministic_failure(error: TrainingFailedError) -> bool:
    """True when a worker of the failed run raised a deterministic error."""
    return deterministic_reason(error) is not None


class DeterministicFailurePolicy(DefaultFailurePolicy):
    def __init__(self, failure_config) -> None:
        super().__init__(failure_config)
        self._system_startup_failures = 0

    def _is_retryable_error(self, training_failed_error: TrainingFailedError) -> bool:
        if is_deterministic_failure(training_failed_error):
            return False
        if is_system_startup_failure(training_failed_error):
            return True
        return super()._is_retryable_error(training_failed_error)

    def make_decision(self, training_failed_error: TrainingFailedError) -> FailureDecision:
        if is_system_startup_failure(training_failed_error):
            self._system_startup_failures += 1
            limit = self.failure_config.max_failures
            if limit != -1 and self._system_startup_failures > limit:
                return FailureDecision.RAISE
        return super().make_decision(training_failed_error)
