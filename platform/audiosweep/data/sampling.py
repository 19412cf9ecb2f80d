"""Which clips an epoch reads, and in what order, as a function of (seed, epoch) only.

Two sampling modes:

- ``uniform``: every row once per epoch (or, with ``samples_per_epoch``, that many draws with
  replacement, all rows equally likely).
- ``balanced``: ``samples_per_epoch`` (default: the split's rows) draws with replacement, row
  ``r`` drawn with probability proportional to ``w_r = sum over its labels c of
  1000 / (n_c + 100)``, where ``n_c`` is the split's number of rows labelled ``c`` (PaSST's
  class-balanced weights, Koutini et al. 2022); ``n_c`` comes from the manifest.

An epoch is planned over Parquet row groups: a seeded multinomial over the groups' total
weights gives each group's number of draws, and the read task of a group picks its rows with
probability proportional to their weights. The two stages together are exactly N independent
draws with ``P(r) = w_r / sum(w)``. Each group's row choice is seeded by (seed, epoch, group),
so the clips drawn depend neither on how groups are split into read tasks nor on the number of
workers consuming them. Group order is a fresh permutation per epoch; rows inside a group are
permuted too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .row_groups import RowGroups

SAMPLING_MODES = ("uniform", "balanced")
# PaSST: weight 1000 / (n_class + offset); the offset damps the rarest classes.
BALANCE_OFFSET = 100.0
BALANCE_SCALE = 1000.0


def class_weights(positives_per_class: list[int] | np.ndarray) -> np.ndarray:
    """PaSST's per-class weights ``1000 / (n_c + 100)`` from a split's positives per class."""
    positives = np.asarray(positives_per_class, dtype=np.float64)
    if positives.ndim != 1 or (positives < 0).any():
        raise ValueError("positives_per_class must be a 1-D array of counts >= 0")
    return BALANCE_SCALE / (positives + BALANCE_OFFSET)


def check_sampling(sampling: str, samples_per_epoch: int | None) -> None:
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, not {sampling!r}")
    if samples_per_epoch is not None and samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be >= 1 or None, not {samples_per_epoch}")


def is_drawn(sampling: str, samples_per_epoch: int | None) -> bool:
    """True when an epoch draws with replacement (otherwise it reads every row once)."""
    return sampling == "balanced" or samples_per_epoch is not None


def rows_per_epoch(split_rows: int, sampling: str, samples_per_epoch: int | None) -> int:
    """Rows an epoch yields: the fixed number of draws, else the split's rows."""
    check_sampling(sampling, samples_per_epoch)
    return samples_per_epoch if samples_per_epoch is not None else split_rows


@dataclass(frozen=True)
class EpochPlan:
    """Row groups to read, in read order (``groups`` index a :class:`RowGroups`), and how many
    rows each yields. ``drawn`` says whether those rows are draws with replacement (weighted by
    the rows' weights) or every row of the group once."""

    seed: int
    epoch: int
    groups: np.ndarray
    draws: np.ndarray
    drawn: bool
    # Which slice of its group's draws an entry is (see plan_epoch); 0 when not drawn.
    parts: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return int(self.draws.sum())


def plan_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    """The generator of one stream of an epoch's plan (0: group draws, 1: rows in a group,
    2: a read task's mixing order): the same numbers on every node and worker count."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    return np.random.default_rng([seed, epoch, *stream])


def plan_epoch(
    groups: RowGroups, *, seed: int, epoch: int, samples: int | None = None
) -> EpochPlan:
    """The epoch's row groups in a fresh order and their draw counts.

    ``samples=None`` reads every row once. Otherwise ``samples`` draws with replacement, by
    the groups' weights (``groups.weight``), or by their row counts when ``weight`` is None
    (uniform over rows).
    """
    rng = plan_rng(seed, epoch, 0)
    if samples is None:
        order = rng.permutation(len(groups))
        return EpochPlan(seed, epoch, order, groups.rows[order], drawn=False)
    weight = groups.weight if groups.weight is not None else groups.rows.astype(np.float64)
    total = float(weight.sum())
    if not total > 0:
        raise ValueError("no row has a positive sampling weight (do the rows have labels?)")
    counts = rng.multinomial(samples, weight / total)
    # A group's draws are cut into slices of at most its row count, each read as its own unit
    # and placed independently in the epoch's order: otherwise a group drawn k times its size
    # would yield k passes over the same few clips in a row, which the local shuffle buffer
    # cannot spread, and batches would repeat the same clips.
    drawn_groups = np.flatnonzero(counts)
    size = np.maximum(groups.rows[drawn_groups], 1)
    pieces = -(-counts[drawn_groups] // size)  # ceil
    entry_group = np.repeat(drawn_groups, pieces)
    entry_part = np.arange(len(entry_group)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    entry_draws = np.minimum(
        counts[entry_group] - entry_part * size.repeat(pieces), size.repeat(pieces)
    )
    order = rng.permutation(len(entry_group))
    return EpochPlan(
        seed, epoch, entry_group[order], entry_draws[order], drawn=True, parts=entry_part[order]
    )


def pick_rows(
    num_rows: int,
    draws: int,
    *,
    seed: int,
    epoch: int,
    group: int,
    drawn: bool,
    weights: np.ndarray | None = None,
    part: int = 0,
) -> np.ndarray:
    """Row positions inside one row group, in read order: a permutation of all its rows, or
    ``draws`` draws with replacement proportional to ``weights`` (uniform when None); ``part``
    is the slice of the group's draws (each slice is seeded on its own)."""
    rng = plan_rng(seed, epoch, 1, group, part) if part else plan_rng(seed, epoch, 1, group)
    if not drawn:
        return rng.permutation(num_rows)
    if weights is None:
        return rng.integers(0, num_rows, size=draws)
    weights = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(weights)
    # Inverse-CDF draws (as Generator.choice does) without its strict sum-to-one check.
    picks = np.searchsorted(cdf, rng.random(draws) * cdf[-1], side="right")
    return np.minimum(picks, num_rows - 1)
