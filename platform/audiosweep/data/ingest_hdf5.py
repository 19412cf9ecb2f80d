"""Ingest AudioSet held as HDF5 files, in the two layouts AudioSet trainers write.

``panns`` (qiuqiangkong/audioset_tagging_cnn, ``utils/dataset.py`` ``pack_waveforms_to_hdf5``
and ``pytorch/utilities.py``): datasets ``audio_name`` (``S20``, ``Y<YTID>.wav``; left empty for
a clip the script could not find, whose waveform and target stay zero), ``waveform``
(``(N, samples)``, float32 in older releases, int16 = ``round(x * 32767)`` in newer ones) and
``target`` (``(N, 527)`` bool), with the sample rate in the file attribute ``sample_rate``.

``passt`` (kkoutini/PaSST ``audioset/prepare_scripts/create_h5pymp3_dataset.py``, read by its
``audioset/dataset.py`` and fschmid56/EfficientAT ``datasets/audioset.py``): ``audio_name``
(``S20``, ``Y<YTID>.mp3``, unbalanced parts as ``NN/Y<YTID>.mp3``), ``mp3`` (variable-length
uint8, one MP3 file per clip) and ``target`` bit-packed along the class axis
(``np.packbits``: ``(N, 66)`` uint8 for 527 classes; readers ``np.unpackbits(..., count=527)``).

The target's columns are the classes of the label index in order (AudioSet's 527 by default).
Every row goes through the same validation as any other ingest; a PANNs waveform travels as
a WAV of its own samples (16-bit or float), so nothing is lost before that.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from .ingest import ClusterIngestOptions, SplitInput, ingest
from .official import audioset_id
from .rows import ClipSource
from .schema import DEFAULT_SAMPLE_RATE, DatasetError, LabelIndex
from .writer import Rejection

if TYPE_CHECKING:  # typing has Unpack from Python 3.11; 3.10 is still supported
    from typing_extensions import Unpack

LAYOUTS = ("panns", "passt")
# Rows read from the file at a time: 32 int16 10 s clips at 32 kHz are about 20 MB.
READ_BLOCK = 32


def expand_files(patterns: list[str], what: str) -> list[Path]:
    """Files matching the glob pattern(s), in order, each once; a pattern matching none fails."""
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern), recursive=True))
        if not matches:
            raise DatasetError(f"no {what} files match {str(pattern)!r}")
        files += [Path(m) for m in matches]
    return list(dict.fromkeys(files))


def detect_layout(h5: Any, path: Path) -> str:
    """``panns`` or ``passt`` from the datasets the file holds."""
    names = set(h5.keys())
    if {"audio_name", "mp3", "target"} <= names:
        return "passt"
    if {"audio_name", "waveform", "target"} <= names:
        return "panns"
    raise DatasetError(
        f"{path}: not a PANNs (audio_name, waveform, target) or PaSST (audio_name, mp3, target) "
        f"HDF5 file; it holds {', '.join(sorted(names)) or 'no datasets'}"
    )


def _unpack_targets(block: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """``(rows, num_classes)`` bool from a block of targets, one column per class or packed."""
    width = block.shape[1] if block.ndim == 2 else -1
    if width == num_classes:
        return block.astype(bool)
    if block.dtype == np.uint8 and width == (num_classes + 7) // 8:
        return np.unpackbits(block, axis=-1, count=num_classes).astype(bool)
    raise DatasetError(
        f"{path}: target has shape {block.shape[1:]} ({block.dtype}); a {num_classes}-class "
        f"index needs {num_classes} columns or {(num_classes + 7) // 8} bit-packed bytes; pass "
        "--labels with the index the file was written with"
    )


def _wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """The samples as a WAV file, losslessly: int16 as 16-bit PCM, float as 32-bit float."""
    buf = io.BytesIO()
    if wave.dtype == np.int16:
        sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    else:
        sf.write(buf, wave.astype(np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _file_rate(h5: Any, path: Path, default: int) -> int:
    value = h5.attrs.get("sample_rate")
    if value is None:
        return int(default)
    rate = int(np.asarray(value).reshape(-1)[0])
    if rate <= 0:
        raise DatasetError(f"{path}: attribute sample_rate is {rate}; pass a file with a valid one")
    return rate


def hdf5_sources(
    files: list[Path], *, labels: LabelIndex, layout: str | None = None, sample_rate: int
) -> Iterator[ClipSource | Rejection]:
    """The clips of ``files`` in file and row order. ``sample_rate`` is a PANNs waveform's
    rate when its file has no ``sample_rate`` attribute (MP3 bytes carry their own)."""
    import h5py

    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"unknown HDF5 layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    for path in files:
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from None
        with h5:
            kind = layout or detect_layout(h5, path)
            audio_key = "mp3" if kind == "passt" else "waveform"
            missing = [k for k in ("audio_name", audio_key, "target") if k not in h5]
            if missing:
                raise DatasetError(
                    f"{path}: layout {kind} needs dataset(s) {', '.join(missing)}; "
                    "check --layout or the file"
                )
            rate = _file_rate(h5, path, sample_rate)
            names, audio, target = h5["audio_name"], h5[audio_key], h5["target"]
            for start in range(0, len(names), READ_BLOCK):
                stop = min(start + READ_BLOCK, len(names))
                block_targets = _unpack_targets(target[start:stop], len(labels), path)
                block_audio = audio[start:stop]
                for i, raw_name in enumerate(names[start:stop]):
                    row = start + i
                    where = f"{path.name} row {row}"
                    name = (
                        raw_name.decode("utf-8", "replace")
                        if isinstance(raw_name, bytes)
                        else str(raw_name)
                    )
                    if not name.strip("\x00 "):
                        # PANNs leaves a row empty when it could not find the clip.
                        yield Rejection(f"{path.name}#{row}", "missing", f"no audio_name ({where})")
                        continue
                    mids = tuple(labels.mids[k] for k in np.flatnonzero(block_targets[i]))
                    if kind == "passt":
                        clip: bytes = np.asarray(block_audio[i], dtype=np.uint8).tobytes()
                    else:
                        clip = _wav_bytes(np.asarray(block_audio[i]), rate)
                    yield ClipSource(audioset_id(name), clip, mids, where)


def count_rows(files: list[Path]) -> int | None:
    import h5py

    try:
        total = 0
        for path in files:
            with h5py.File(path, "r") as h5:
                total += len(h5["audio_name"])
        return total
    except (OSError, KeyError):
        return None


def prepare_hdf5(
    out_dir: str | os.PathLike,
    *,
    splits: dict[str, list[str]],
    labels: LabelIndex,
    layout: str | None = None,
    official: dict[str, str | os.PathLike] | None = None,
    **options: Unpack[ClusterIngestOptions],
) -> dict[str, dict[str, Any]]:
    """Ingest the HDF5 files matching each split's patterns; ``official`` maps a split to the
    official segments CSV its coverage is measured against; ``options`` as `ingest` takes
    them (``sample_rate``, the dataset's, is also a PANNs file's rate when it has none)."""
    found = {split: expand_files(patterns, "HDF5") for split, patterns in splits.items()}
    rate = int(options.get("sample_rate", DEFAULT_SAMPLE_RATE))
    inputs = {
        split: SplitInput(
            hdf5_sources(files, labels=labels, layout=layout, sample_rate=rate),
            total=count_rows(files),
        )
        for split, files in found.items()
    }
    return ingest(
        out_dir,
        inputs,
        labels=labels,
        source={
            "kind": "hdf5",
            **({"layout": layout} if layout else {}),
            "files": {split: [f.name for f in files] for split, files in found.items()},
        },
        official=official,
        **options,
    )
