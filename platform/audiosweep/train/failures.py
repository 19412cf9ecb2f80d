"""Ray Train's failure policy, except that deterministic failures are not retried.

Ray 2.60's default policy retries every worker-group failure up to `max_failures` times. That
is right for a lost node or a dead process, which a restart from the last checkpoint mends, and
wrong for a bug or a bad value in the user's own code, which fails again the same way after
each restart. A failure is deterministic when any worker raised, from the training function, an
`audiosweep` `UserError` or one of Python's programming errors below; the other ranks' errors
are then collateral (a collective whose peer left).

The policy is chosen where `TorchTrainer.fit` builds it, so `TrialTrainer.fit` repeats that
method's few lines with this policy (the internals are those of the pinned ray==2.60.0).
"""

from __future__ import annotations

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy
from ray.train.v2._internal.execution.scaling_policy import create_scaling_policy
from ray.train.v2._internal.util import ObjectRefWrapper
from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError

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


def is_deterministic_failure(error: TrainingFailedError) -> bool:
    """True when a worker of the failed run raised a deterministic error."""
    return deterministic_reason(error) is not None


class DeterministicFailurePolicy(DefaultFailurePolicy):
    def _is_retryable_error(self, training_failed_error: TrainingFailedError) -> bool:
        if is_deterministic_failure(training_failed_error):
            return False
        return super()._is_retryable_error(training_failed_error)


class TrialTrainer(TorchTrainer):
    """`TorchTrainer` whose run is not retried after a deterministic failure."""

    def fit(self):
        if self.running_in_local_mode:
            return super().fit()
        result = self._initialize_and_run_controller(
            train_fn_ref=ObjectRefWrapper(self._get_train_func()),
            scaling_policy=create_scaling_policy(self.scaling_config),
            failure_policy=DeterministicFailurePolicy(self.run_config.failure_config),
            train_run_context=self.train_run_context,
            callbacks=self._create_default_callbacks(),
            validation_config=self.validation_config,
        )
        if result.error:
            raise result.error
        return result
