"""Collect evaluation outputs from every worker, each eval clip exactly once.

The eval split is handed to workers unequally (``streaming_split(equal=False)``), so no clip is
duplicated or dropped to even out the shards the way a distributed sampler pads them; the
variable-length per-worker results are padded only for the collective and trimmed again.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


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
