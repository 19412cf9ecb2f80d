"""Ingest webdataset tar shards: members that share a key form one clip.

A member ``dir/Y<YTID>.flac`` has key ``dir/Y<YTID>`` (the name up to the first dot of its
last part) and extension ``flac``; consecutive members with one key are one sample. A sample
needs one audio member (any format soundfile reads) and its labels, from a ``json`` member
(``labels``, ``label``, ``mids`` or ``tags``: a list of MIDs or class indices, or a
comma-separated string) or a ``cls`` member (class indices as text, comma- or space-separated).
The clip id is the JSON's ``clip_id``, ``video_id`` or ``ytid`` if present, else the YouTube
id in the key. Class indices refer to the label index (AudioSet's 527 by default).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ingest import ClusterIngestOptions, SplitInput, ingest
from .ingest_hdf5 import expand_files
from .official import audioset_id
from .rows import ClipSource
from .schema import LabelIndex
from .writer import Rejection

if TYPE_CHECKING:  # typing has Unpack from Python 3.11; 3.10 is still supported
    from typing_extensions import Unpack

AUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "opus", "aiff", "aif")
LABEL_KEYS = ("labels", "label", "mids", "tags")
ID_KEYS = ("clip_id", "video_id", "ytid")


def split_member(name: str) -> tuple[str, str]:
    """(key, extension) of a member name, as webdataset groups members."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _label_values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _mids(values: list[Any], labels: LabelIndex) -> tuple[tuple[str, ...], list[str]]:
    """MIDs for label values (MIDs as they are, integers as class indices); and the values
    that are neither."""
    mids, bad = [], []
    for v in values:
        text = str(v).strip()
        if isinstance(v, (int, float)) or text.isdigit():
            k = int(float(text))
            if 0 <= k < len(labels):
                mids.append(labels.mids[k])
            else:
                bad.append(f"class index {k} outside 0..{len(labels) - 1}")
        else:
            mids.append(text)
    return tuple(mids), bad


def _sample(
    key: str, members: dict[str, bytes], labels: LabelIndex, where: str
) -> ClipSource | Rejection:
    clip_id = audioset_id(key)
    meta: dict[str, Any] = {}
    values: list[Any] = []
    if "json" in members:
        try:
            meta = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            return Rejection(clip_id, "corrupt", f"unreadable JSON ({where}): {err}")
        if not isinstance(meta, dict):
            meta = {"labels": meta}
        clip_id = next((str(meta[k]) for k in ID_KEYS if meta.get(k)), clip_id)
        values = next((_label_values(meta[k]) for k in LABEL_KEYS if k in meta), [])
    if not values and "cls" in members:
        values = _label_values(members["cls"].decode("utf-8", "replace").replace(" ", ","))
    mids, bad = _mids(values, labels)
    if bad:
        return Rejection(clip_id, "unknown_label", f"{'; '.join(bad)} ({where})")
    audio = next((members[ext] for ext in AUDIO_EXTENSIONS if ext in members), None)
    return ClipSource(clip_id, audio, mids, where)


def wds_sources(shards: list[Path], labels: LabelIndex) -> Iterator[ClipSource | Rejection]:
    """The samples of ``shards`` in shard and member order."""
    for shard in shards:
        key: str | None = None
        members: dict[str, bytes] = {}
        count = 0
        try:
            with tarfile.open(shard, "r|*") as tar:  # streamed: shards can be large
                for info in tar:
                    if not info.isfile():
                        continue
                    member_key, ext = split_member(info.name)
                    if member_key != key:
                        if key is not None:
                            yield _sample(key, members, labels, f"{shard.name}:{key}")
                            count += 1
                        key, members = member_key, {}
                    handle = tar.extractfile(info)
                    members[ext] = handle.read() if handle else b""
            if key is not None:
                yield _sample(key, members, labels, f"{shard.name}:{key}")
        except (tarfile.TarError, OSError, EOFError) as err:
            where = f"{shard.name}#{count}"
            yield Rejection(where, "corrupt", f"unreadable tar from sample {count}: {err}")


def prepare_wds(
    out_dir: str | os.PathLike,
    *,
    splits: dict[str, list[str]],
    labels: LabelIndex,
    official: dict[str, str | os.PathLike] | None = None,
    **options: Unpack[ClusterIngestOptions],
) -> dict[str, dict[str, Any]]:
    """Ingest the tar shards matching each split's glob(s); ``official`` and ``options`` as
    `prepare_hdf5` takes them."""
    found = {split: expand_files(patterns, "tar shard") for split, patterns in splits.items()}
    return ingest(
        out_dir,
        {split: SplitInput(wds_sources(files, labels)) for split, files in found.items()},
        labels=labels,
        source={
            "kind": "wds",
            "files": {split: [f.name for f in files] for split, files in found.items()},
        },
        official=official,
        **options,
    )
