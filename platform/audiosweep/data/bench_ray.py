"""The Ray instance a data benchmark runs on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def benchmark_ray(address: str | None = None) -> Iterator[None]:
    """This process's Ray if it has one; else the cluster at ``address`` (or ``RAY_ADDRESS``);
    else a private instance with this machine's CPUs. Shut down afterwards only if started
    here. Ray Data's progress bars are off: they would land in the timed loops' output."""
    import ray

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started = True
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        if started:
            ray.shutdown()
