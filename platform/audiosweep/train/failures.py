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

Ray Train has no public way to choose the policy: `ray_compat` adapts its private one to the
two predicates here. Ray Train unpickles the policy in its controller, a fresh process per
trial: this module imports neither torch nor the models.
"""

from __future__ import annotations

from ray.exceptions import RayActorError, RaySystemError
from ray.train.v2.api.exceptions import ControllerError, TrainingFailedError, WorkerGroupError

from audiosweep.errors import UserError
from audiosweep.ray_compat import (
    PredicateFailurePolicy,
    ray_retries_controller_error,
    user_exception,
)

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
    return isinstance(user_exception(error), DETERMINISTIC)


def deterministic_reason(error: TrainingFailedError) -> str | None:
    """The first deterministic worker error of a failed run, on one line; None if none."""
    if not isinstance(error, WorkerGroupError):
        return None
    for failure in error.worker_failures.values():
        if is_deterministic(failure):
            base = user_exception(failure)
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
    if ray_retries_controller_error(error.controller_failure):
        return False
    causes = list(_causes(error.controller_failure))
    if any(is_deterministic(c) for c in causes):
        return False
    return any(isinstance(c, (RaySystemError, RayActorError)) for c in causes)


def is_deterministic_failure(error: TrainingFailedError) -> bool:
    """True when a worker of the failed run raised a deterministic error."""
    return deterministic_reason(error) is not None


class DeterministicFailurePolicy(PredicateFailurePolicy):
    """Ray Train's failure policy, except that a deterministic failure ends the run at once and
    a system failure while workers start is retried (up to `max_failures` times)."""

    def __init__(self, failure_config) -> None:
        super().__init__(
            failure_config,
            never_retry=is_deterministic_failure,
            also_retry=is_system_startup_failure,
        )
