"""AudioSet segment CSVs: ``#`` header lines, then ``YTID, start_seconds, end_seconds,
"mid1,mid2"`` per clip (the official lists and any subset written the same way)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .schema import DatasetError


@dataclass(frozen=True)
class Segment:
    ytid: str
    start: str
    end: str
    mids: tuple[str, ...]
    line: int


def read_segments(path: str | os.PathLike) -> Iterator[Segment]:
    """Parse a segments CSV; a line without a label field yields a segment with no MIDs."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"segments CSV not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            fields = [x.strip() for x in row]
            mids = (
                tuple(m.strip() for m in fields[3].split(",") if m.strip())
                if len(fields) > 3
                else ()
            )
            yield Segment(
                ytid=fields[0],
                start=fields[1] if len(fields) > 1 else "",
                end=fields[2] if len(fields) > 2 else "",
                mids=mids,
                line=line_no,
            )
