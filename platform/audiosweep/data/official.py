"""AudioSet clip ids as copies name them, and a dataset's coverage of the official lists.

Copies name a clip ``Y<YTID>.wav``, ``00/Y<YTID>.mp3``, ``<YTID>_30.000`` or plain ``<YTID>``;
the official segment CSVs name it by its 11-character YouTube id. Coverage counts, per split,
the official ids the dataset holds (``present``), lacks (``missing``) and the rows it holds
that the list does not name (``extra``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .segments import read_segments

# YouTube ids are 11 characters of [A-Za-z0-9_-]; downloaders prefix "Y" (ids may start with
# "-") and append the segment's start (and end) seconds.
_YTID = re.compile(r"^Y?(?P<id>[A-Za-z0-9_-]{11})(?:_\d+(?:\.\d+)?){0,2}$")
# Ids listed in the manifest for each of missing/extra: enough to look a few up.
SHOWN_IDS = 20


def audioset_id(name: str) -> str:
    """The YouTube id in a file or member name (folders and extension dropped), or the bare
    name when it holds none."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    root, ext = os.path.splitext(base)
    if ext[1:].isalnum() and not ext[1:].isdigit():  # an extension, not a start time
        base = root
    match = _YTID.match(base)
    return match.group("id") if match else base


def official_ids(segments_csv: str | os.PathLike) -> list[str]:
    """The YouTube ids an official segments CSV lists, in file order."""
    return [seg.ytid for seg in read_segments(segments_csv)]


def split_clip_ids(root: Path, entry: dict[str, Any]) -> list[str]:
    """The clip ids a split's shards hold (only the id column is read)."""
    ids: list[str] = []
    for shard in entry["shards"]:
        table = pq.read_table(root / shard["file"], columns=["clip_id"])
        ids += table.column("clip_id").to_pylist()
    return ids


def coverage(held: Iterable[str], official: Iterable[str], list_name: str) -> dict[str, Any]:
    """How the ids ``held`` cover the ``official`` list named ``list_name``."""
    held_set, official_set = set(held), set(official)
    missing = sorted(official_set - held_set)
    extra = sorted(held_set - official_set)
    return {
        "official": list_name,
        "official_ids": len(official_set),
        "present": len(official_set & held_set),
        "missing": len(missing),
        "extra": len(extra),
        "missing_ids": missing[:SHOWN_IDS],
        "extra_ids": extra[:SHOWN_IDS],
    }


def format_coverage(split: str, cov: dict[str, Any]) -> str:
    share = cov["present"] / cov["official_ids"] if cov["official_ids"] else 0.0
    return (
        f"  {split} vs {cov['official']}: {cov['present']} of {cov['official_ids']} official "
        f"clips present ({share:.1%}), {cov['missing']} missing, {cov['extra']} extra"
    )
