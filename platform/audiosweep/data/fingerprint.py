"""A dataset's fingerprint: one id for exactly which clips, labels and audio it holds.

Definition (schema version 1). A row's digest is
``sha256(clip_id NUL labels NUL sha256(audio))``, ``labels`` the row's sorted class indices
joined by commas, ``audio`` the encoded bytes stored in the shard, read as a 256-bit integer.
A split's ``content_digest`` is the sum of its rows' digests modulo 2**256: it depends on the
set of rows and on nothing else, so re-cutting the same rows into other shards (another
``--shard-mb``, a Ray ingest's chunks) keeps it, while one clip more or less, one label or one
re-encoded clip changes it. The fingerprint is the sha256 of the canonical JSON of
``{"classes": [MIDs in index order], "sample_rate": Hz, "splits": {name: [rows,
content_digest]}}``, shown shortened to its first 16 hex digits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow.parquet as pq

MODULUS = 1 << 256
SHOWN_DIGITS = 16


def row_digest(clip_id: str, labels: Iterable[int], audio: bytes) -> int:
    """One row's digest as an integer (see the module's definition)."""
    h = hashlib.sha256()
    h.update(clip_id.encode("utf-8"))
    h.update(b"\0")
    h.update(",".join(str(int(x)) for x in sorted(labels)).encode())
    h.update(b"\0")
    h.update(hashlib.sha256(audio).digest())
    return int.from_bytes(h.digest(), "big")


def add_digests(*digests: int | str) -> int:
    """The content digest of the union of disjoint row sets (integers or 64-digit hex)."""
    total = 0
    for d in digests:
        total += int(d, 16) if isinstance(d, str) else int(d)
    return total % MODULUS


def as_hex(digest: int) -> str:
    return f"{digest % MODULUS:064x}"


def shards_digest(paths: Iterable[str | os.PathLike]) -> int:
    """The content digest of the rows in these shard files (reads every row's audio)."""
    total = 0
    for path in paths:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=64, columns=["clip_id", "labels", "audio"]):
            cols = batch.to_pydict()
            for clip_id, labels, audio in zip(
                cols["clip_id"], cols["labels"], cols["audio"], strict=True
            ):
                total += row_digest(clip_id, labels, audio)
    return total % MODULUS


def fingerprint(mids: Sequence[str], sample_rate: int, splits: dict[str, dict[str, Any]]) -> str:
    """The dataset fingerprint (64 hex digits) from the class MIDs, the sample rate and each
    split's manifest entry (its ``rows`` and ``content_digest``)."""
    payload = {
        "classes": list(mids),
        "sample_rate": int(sample_rate),
        "splits": {
            name: [int(entry["rows"]), entry["content_digest"]]
            for name, entry in sorted(splits.items())
        },
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def short(fp: str | None) -> str:
    """The fingerprint as shown in summaries, reports and MLflow run names."""
    return fp[:SHOWN_DIGITS] if fp else "none"
