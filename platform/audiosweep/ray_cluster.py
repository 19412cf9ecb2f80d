"""Connecting to Ray: the cluster in RAY_ADDRESS / --address, else a private local one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def connect(
    address: str | None = None, *, num_cpus: int | None = None, worker_logs: bool = True
) -> None:
    """`ray.init` once: the given/`RAY_ADDRESS` cluster, or a new local one on 127.0.0.1.

    worker_logs=False keeps the workers' output in Ray's log files (see `logs_dir`) instead of
    streaming it to this console: a sweep prints its own compact progress instead."""
    import ray

    if ray.is_initialized():
        return
    quiet_data_progress()
    address = driver_address(address or os.environ.get("RAY_ADDRESS"))
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=worker_logs)
        except ConnectionError as err:
            from audiosweep.errors import ClusterError

            raise ClusterError(
                f"no Ray cluster answers at {address} ({err}); start one with `make up` or "
                "`ray start --head`, or unset RAY_ADDRESS to run on a private local cluster"
            ) from None
    else:
        # Single-node mode keeps every Ray port on 127.0.0.1 (see infra/local/common.sh).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        from audiosweep.ray_compat import loopback_node_options

        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=worker_logs,
            **loopback_node_options(),
        )


@contextlib.contextmanager
def session(
    address: str | None = None, *, num_cpus: int | None = None, worker_logs: bool = True
) -> Iterator[None]:
    """`connect` for the length of a `with` block, and `ray.shutdown()` after it only if the
    block made the connection (a caller already connected keeps it)."""
    import ray

    started = not ray.is_initialized()
    connect(address, num_cpus=num_cpus, worker_logs=worker_logs)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def driver_address(address: str | None) -> str | None:
    """The address a driver connects to. `make up` exports RAY_ADDRESS as the dashboard's
    http:// address, which `ray job submit` needs but `ray.init` refuses; its exports also name
    the head's GCS address, which a driver on this machine uses instead."""
    if not address or not address.startswith(("http://", "https://")):
        return address
    gcs = os.environ.get("AUDIOSWEEP_RAY_GCS_ADDRESS")
    if gcs:
        return gcs
    from audiosweep.errors import ClusterError

    raise ClusterError(
        f"{address} is a Ray dashboard (job submission) address; a driver needs the head's "
        "GCS address: pass --address <head>:6379, or submit with `ray job submit`"
    )


def logs_dir() -> str:
    """Where this Ray node writes every worker's stdout/stderr (worker-*.out / *.err)."""
    from audiosweep.ray_compat import driver_logs_dir

    return driver_logs_dir() or "the Ray session's logs folder"


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the fix, when nothing listens at a host:port address (ray.init
    would retry for minutes). Other forms ("auto", ray://, http://) are left to Ray."""
    import socket

    from audiosweep.errors import ClusterError

    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as err:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`make up` or `ray start --head`, or unset RAY_ADDRESS for a private local cluster"
        ) from None


def quiet_data_progress() -> None:
    """Ray Data's per-operator progress bars flood logs that are not a terminal (job logs,
    CI); keep them only for interactive use. Train workers inherit the driver's DataContext."""
    import sys

    from ray.data import DataContext

    ctx = DataContext.get_current()
    interactive = sys.stderr.isatty()
    ctx.enable_progress_bars = interactive
    ctx.enable_operator_progress_bars = interactive


@contextlib.contextmanager
def data_console_quiet() -> Iterator[None]:
    """Ray Data's INFO lines (three per dataset execution, two executions per epoch) kept out
    of this process's console, still in its ray-data.log: a training loop that runs here (not
    in a Ray worker, whose console is a log file) would otherwise bury its own epoch lines."""
    import logging

    import ray.data  # noqa: F401 - configures the "ray.data" logger and its handlers

    consoles = [h for h in logging.getLogger("ray.data").handlers if h.name == "console"]
    levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)


@contextlib.contextmanager
def cwd_kept(path: str) -> Iterator[None]:
    """Run in `path`, a folder that outlives the job: Tune resolves paths against the working
    directory, and on a simulated cluster (infra/sim/) every node shares one session folder,
    where a node that joins re-unpacks the job's working_dir, deleting the driver's cwd."""
    try:
        previous = os.getcwd()
    except FileNotFoundError:  # already deleted
        previous = None
    os.chdir(path)
    try:
        yield
    finally:
        if previous and os.path.isdir(previous):
            os.chdir(previous)


def pin_data_actors_here() -> None:
    """Create Ray Data's detached helper actors (stats, autoscaling coordinator) on this node.

    Ray Data starts them on the node of the first process that runs a Dataset, with hard
    affinity and no end: on an autoscaling cluster that is a worker node, which then never
    counts as idle and never scales down. Created first by the sweep driver, they live on the
    head (job drivers run there). Internal Ray helpers (`ray_compat`): if they move, nothing
    breaks but the scale-down."""
    from audiosweep.ray_compat import create_data_helper_actors

    create_data_helper_actors()
