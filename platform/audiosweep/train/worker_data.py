"""Data in and out of a worker: batches of its Ray Data shard as device tensors (copied only
when they must be), and evaluation outputs collected from every worker, each eval clip exactly
once.

The eval split is handed to workers unequally (``streaming_split(equal=False)``), so no clip is
duplicated or dropped to even out the shards the way a distributed sampler pads them; the
variable-length per-worker results are padded only for the collective and trimmed again.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


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


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate (n_i, ...) tensors from all ranks (n_i may differ) in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    world = dist.get_world_size()
    count = torch.tensor([local.shape[0]], device=local.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = local.new_zeros((max(sizes), *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def gather_strings(local: list[str]) -> list[str]:
    """All ranks' strings (e.g. clip ids), concatenated in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(local)
    out: list[list[str]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(out, list(local))
    return [s for part in out for s in part]
