"""A Ray Data datasource that reads one epoch's plan of Parquet row groups.

Ray Data asks a datasource for its read tasks each time a dataset executes (every epoch), so
the plan (group order and draws, :mod:`.sampling`) is made there, from (seed, epoch), and
each read task reads its row groups and picks their rows. Nothing per row passes through the
process that plans: only the row-group arrays (a few bytes per group).

A read task reads about ``mix_rows`` planned rows from many row groups and emits them in one
random order (still compressed, so mixing is cheap), in blocks of ``block_rows``. Row groups
hold a few dozen neighbouring clips and every draw of a clip falls in its group's slice, so
group-by-group output gives blocks of one or two groups, each clip repeated where it was
drawn more than once, and only the workers' local shuffle buffer (decoded audio, costly)
would mix them; a mixed block spans as many groups as random draws would
(tests/test_data_sampling.py). ``data.mix_rows`` sets the window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .epoch_clock import EpochClock
from .row_groups import RowGroups, row_weights
from .sampling import EpochPlan, pick_rows, plan_epoch, plan_rng

if TYPE_CHECKING:
    from ray.data import DataContext


@dataclass(frozen=True)
class _Units:
    """What one read task reads: row groups (file, number in file, global id) and draws."""

    paths: tuple[str, ...]
    file: np.ndarray
    index: np.ndarray
    group: np.ndarray
    draws: np.ndarray
    part: np.ndarray
    columns: tuple[str, ...]
    seed: int
    epoch: int
    drawn: bool
    class_weights: np.ndarray | None
    block_rows: int


def _read_units(units: _Units) -> Iterator[pa.Table]:
    tables = list(_read_groups(units))
    if not tables:
        return
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    # Seeded by the task's first plan entry: the same task reads the same order on any node.
    rng = plan_rng(units.seed, units.epoch, 2, int(units.group[0]), int(units.part[0]))
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    for start in range(0, table.num_rows, units.block_rows):
        yield table.slice(start, units.block_rows)


def _read_groups(units: _Units) -> Iterator[pa.Table]:
    files: dict[int, pq.ParquetFile] = {}
    for f, index, group, draws, part in zip(
        units.file, units.index, units.group, units.draws, units.part, strict=True
    ):
        if f not in files:
            files[f] = pq.ParquetFile(units.paths[f])
        table = files[f].read_row_group(int(index), columns=list(units.columns))
        weights = None
        if units.drawn and units.class_weights is not None:
            weights = row_weights(table.column("labels"), units.class_weights)
        rows = pick_rows(
            table.num_rows,
            int(draws),
            seed=units.seed,
            epoch=units.epoch,
            group=int(group),
            drawn=units.drawn,
            weights=weights,
            part=int(part),
        )
        yield table.take(pa.array(rows))


class PlannedParquetDatasource(Datasource):
    """Rows of ``groups`` as planned per epoch by :func:`~.sampling.plan_epoch`.

    ``epoch`` is a fixed epoch, or an :class:`EpochClock` read each time the dataset executes.
    ``class_weights`` (per class) makes the draws weighted by the rows' labels; ``samples``
    None reads every row once per epoch. Each read task mixes about ``mix_rows`` rows and
    emits blocks of ``block_rows``.
    """

    def __init__(
        self,
        groups: RowGroups,
        *,
        columns: Sequence[str],
        seed: int,
        epoch: int | EpochClock,
        samples: int | None = None,
        class_weights: np.ndarray | None = None,
        mix_rows: int = 256,
        block_rows: int = 32,
    ) -> None:
        super().__init__()
        if mix_rows < 1 or block_rows < 1:
            raise ValueError(f"mix_rows and block_rows must be >= 1, got {mix_rows}, {block_rows}")
        self._mix_rows = int(mix_rows)
        self._block_rows = int(block_rows)
        if class_weights is not None and "labels" not in columns:
            raise ValueError("weighted draws need the labels column")
        self._groups = groups
        self._columns = tuple(columns)
        self._seed = int(seed)
        self._epoch = epoch
        self._samples = samples
        self._class_weights = class_weights
        self._schema = pq.read_schema(groups.paths[0]) if groups.paths else None
        if self._schema is not None:
            self._schema = pa.schema([self._schema.field(c) for c in self._columns])

    @property
    def rows_per_epoch(self) -> int:
        return self._samples if self._samples is not None else self._groups.total_rows

    def estimate_inmemory_data_size(self) -> int:
        return int(self.rows_per_epoch * self._groups.bytes_per_row)

    @property
    def read_tasks(self) -> int:
        """Read tasks per epoch: one per ``mix_rows`` planned rows (fewer when the plan has
        fewer row groups or slices than that)."""
        return max(1, -(-self.rows_per_epoch // self._mix_rows))

    def resolve_epoch(self, data_context: DataContext | None) -> int:
        if isinstance(self._epoch, int):
            return self._epoch
        epoch = self._epoch.get()
        if epoch is not None:
            return epoch
        if data_context is None:
            # Ray's metadata probes (at construction, in the optimizer) read nothing; every
            # epoch has the same row count, so any epoch describes the dataset.
            return 0
        where = "" if self._epoch.shared else " in the process that plans this dataset"
        raise RuntimeError(
            f"epoch clock {self._epoch.name!r} was never set{where}: the training loop must "
            "call EpochClock.set(epoch) before iterating the train dataset"
            + ("" if self._epoch.shared else " (several workers need EpochClock.new(shared=True))")
        )

    def plan(self, epoch: int) -> EpochPlan:
        return plan_epoch(self._groups, seed=self._seed, epoch=epoch, samples=self._samples)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: DataContext | None = None,
    ) -> list[ReadTask]:
        epoch = self.resolve_epoch(data_context)
        plan = self.plan(epoch)
        groups = self._groups
        tasks = []
        # Fewer, larger tasks than Ray asks for when that is what mixing needs (see
        # `read_tasks`); a task's blocks are batch-sized.
        for chunk in _split_by_rows(plan.draws, max(1, min(parallelism, self.read_tasks))):
            ids = plan.groups[chunk]
            files, local = np.unique(groups.file[ids], return_inverse=True)
            units = _Units(
                paths=tuple(groups.paths[f] for f in files),
                file=local.astype(np.int32),
                index=groups.index[ids],
                group=ids,
                draws=plan.draws[chunk],
                part=plan.parts[chunk] if plan.parts is not None else np.zeros(len(chunk), int),
                columns=self._columns,
                seed=self._seed,
                epoch=epoch,
                drawn=plan.drawn,
                class_weights=self._class_weights,
                block_rows=self._block_rows,
            )
            rows = int(units.draws.sum())
            metadata = BlockMetadata(
                num_rows=rows,
                size_bytes=int(rows * groups.bytes_per_row),
                input_files=list(units.paths),
                exec_stats=None,
            )
            tasks.append(
                ReadTask(
                    _bind(units),
                    metadata,
                    schema=self._schema,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks


def _bind(units: _Units) -> Any:
    # A closure over this task's units only (never the datasource with every group).
    return lambda: _read_units(units)


def _split_by_rows(draws: np.ndarray, parts: int) -> list[np.ndarray]:
    """Contiguous runs of plan entries with about equal rows each, at most ``parts`` runs."""
    if len(draws) == 0:
        return []
    cumulative = np.cumsum(draws)
    targets = cumulative[-1] * np.arange(1, parts) / parts
    cuts = np.unique(np.searchsorted(cumulative, targets, side="left") + 1)
    cuts = cuts[(cuts > 0) & (cuts < len(draws))]
    return [c for c in np.split(np.arange(len(draws)), cuts) if len(c)]
