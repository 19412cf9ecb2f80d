"""The tables of the sweep reports (`sweep.report`, `sweep.report_scenes`): mean ± std over seeds,
cells with "–" for a missing value, Markdown tables and the rows' CSV."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds; NaN where there are too few for either."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def cell(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``; "–" when there is none (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def plus_minus(row: dict[str, Any], name: str, scale: float, spec: str) -> str:
    """``<name>_mean ± <name>_std`` of a report row, both multiplied by ``scale``."""
    return f"{cell(scale * row[f'{name}_mean'], spec)} ± {cell(scale * row[f'{name}_std'], spec)}"


def model_name(row: dict[str, Any]) -> str:
    """A row's architecture, with the model it was built as when that differs."""
    return (
        row["arch"] if row["arch"] == row["model_arch"] else f"{row['arch']} ({row['model_arch']})"
    )


def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table."""
    return [
        _markdown_row(header),
        "|" + "---|" * len(header),
        *(_markdown_row(cells) for cells in rows),
    ]


def _markdown_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_csv(rows: list[dict[str, Any]], fields: Sequence[str], path: Path) -> Path:
    """``rows`` as a CSV of ``fields`` (other keys left out)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
