"""Benchmarks: ratios measured side by side in one run (`audiosweep bench <name>`).

Tools, not library: no module of the library imports this package. Each benchmark that needs
Ray gets it through `ray_session`, which connects through `ray_cluster` as every command does;
each turns its result into CSV rows (`csv_rows`), which `results.write_csv` writes for `--csv`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """This process's Ray if it has one; else the cluster at `address` (or RAY_ADDRESS); else
    a private local one with this machine's CPUs, shut down afterwards. Workers' output and
    Ray Data's progress bars stay out of the timed loops' output."""
    from ray.data import DataContext

    from audiosweep.ray_cluster import session

    with session(address, num_cpus=os.cpu_count(), worker_logs=False):
        DataContext.get_current().enable_progress_bars = False
        yield
