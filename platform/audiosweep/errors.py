"""The one exception family for mistakes a user can fix.

Library code raises a `UserError` subclass with a one-line message that names the problem and
the fix; `audiosweep.cli.main` catches it once, prints it on one line and exits with 2. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input or environment (config, data, services, cluster)."""

    exit_code = 2

    def one_line(self) -> str:
        return " ".join(str(self).split())


class ClusterError(UserError):
    """The Ray cluster cannot be reached or cannot ever run the work asked of it."""


class ConfigError(UserError, ValueError):
    """A preset, override or search space that cannot be turned into a valid config."""


class DatasetError(UserError):
    """A dataset folder that cannot be used as asked (incomplete, mismatched, refused)."""


class StorageError(UserError, ValueError):
    """A run root or file location that cannot be used (unknown scheme, unreachable store)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model asked for."""


class TrackingError(UserError, RuntimeError):
    """The MLflow tracking server cannot be reached or refuses what is logged."""


class ExportError(UserError):
    """A run folder that cannot be exported as asked."""
