"""Batches of a Ray Data shard as device tensors, copied only when they must be."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


def iterate(
    shard: Any,
    batch_size: int,
    device: torch.device,
    *,
    shuffle_buffer: int | None = None,
    shuffle_seed: int | None = None,
    drop_last: bool,
):
    """Batches of a Ray Data shard as device tensors (clip ids stay a list of str)."""
    pin = device.type == "cuda"
    for batch in shard.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        drop_last=drop_last,
        local_shuffle_buffer_size=shuffle_buffer or None,
        local_shuffle_seed=shuffle_seed if shuffle_buffer else None,
    ):
        out: dict[str, Any] = {"clip_id": [str(c) for c in batch.get("clip_id", ())]}
        for key in ("waveform", "target"):
            out[key] = host_tensor(batch[key], pin=pin).to(device, non_blocking=pin)
        yield out


def host_tensor(array: np.ndarray, *, pin: bool) -> torch.Tensor:
    """A float32 CPU tensor of a batch column, copied only when it must be.

    Batches that view Ray's object store or Arrow buffers are read-only. For a GPU the pinned
    copy is the only host copy needed (the source is only read). On the CPU the tensor is the
    one the pipeline gets, so a read-only batch is copied once rather than aliased, and a
    writable, contiguous float32 batch is shared as is.
    """
    array = np.asarray(array, dtype=np.float32)  # no copy when it is float32 already
    if pin:
        with warnings.catch_warnings():  # torch warns on read-only arrays; pin_memory copies
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array).pin_memory()
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, dtype=np.float32)
    return torch.from_numpy(array)
