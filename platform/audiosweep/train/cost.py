"""What one clip and one training step cost a model, independent of how busy the machine is:
multiply-accumulates per clip, parameters, and the peak memory of a training step.

- MACs: torch's FLOP counter (`torch.utils.flop_counter.FlopCounterMode`) over an eval forward
  of one clip, halved (it counts a multiply-accumulate as two FLOPs). It counts the ops it has
  formulas for (convolutions, matmuls, attention), not element-wise work.
- Peak memory: on CUDA, `torch.cuda.max_memory_allocated` over the step, less what was
  allocated before it, plus the model's own parameters and buffers. On CPU torch keeps no such
  statistic, so `live_storage` follows every tensor storage the step's ops create, from its
  allocation until it is freed; the peak is the largest sum alive at once, plus the model's
  parameters and buffers. Both count the model, its inputs, activations kept for backward and
  gradients; neither counts optimiser state or the allocator's cached, unused blocks.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from audiosweep.config import TrialConfig


def macs_per_clip(model: nn.Module, clip_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one eval forward pass on one clip of ``clip_shape`` (C, F, T)."""
    param = next(model.parameters())
    x = torch.zeros(1, *clip_shape, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def live_storage() -> Any:
    """A dispatch mode that follows the bytes of tensor storage alive at once among those
    created while it is on: each new storage counts from the op that allocates it until
    Python's handle to it is collected (a weak-reference callback). ``.live``, ``.peak``."""
    from audiosweep.ray_compat import torch_dispatch_mode_base

    class LiveStorage(torch_dispatch_mode_base()):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self._seen: dict[int, int] = {}  # id of the storage object -> bytes counted

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in _tensors(out):
                if t.device.type == "meta":
                    continue
                storage = t.untyped_storage()
                key = id(storage)
                if key in self._seen:
                    continue
                size = storage.nbytes()
                self._seen[key] = size
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key)
            return out

        def _free(self, key: int) -> None:
            self.live -= self._seen.pop(key, 0)

    return LiveStorage()


def train_step_peak_bytes(
    model: nn.Module, batch: int, clip_shape: tuple[int, ...], num_classes: int
) -> int:
    """Peak bytes of one training step (forward, BCE loss, backward) of a copy of ``model`` on
    a random batch of ``batch`` clips, on the model's device (see the module's note)."""
    param = next(model.parameters())
    device = param.device
    step_model = copy.deepcopy(model).train()
    base = tensor_bytes(step_model)
    x = torch.randn(batch, *clip_shape, device=device)
    target = torch.zeros(batch, num_classes, device=device)

    def step() -> None:
        out = step_model(x)
        nn.functional.binary_cross_entropy_with_logits(out, target).backward()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before + base
    # The input was made before the mode: count it by hand.
    base += x.numel() * x.element_size() + target.numel() * target.element_size()
    with live_storage() as tracker:
        step()
    return tracker.peak + base


def clip_shape(cfg: TrialConfig) -> tuple[int, int, int]:
    """(channels, mel bins, frames) of one clip as the trial's model sees it: the preset's clip
    length through its front end (AudioSet's 10 s at 32 kHz, hop 320: 1 x 128 x 1001)."""
    return (1, cfg.audio.n_mels, cfg.audio.num_frames(cfg.clip_samples()))


def cost_figures(
    model: nn.Module, *, batch: int, clip_shape: tuple[int, ...], num_classes: int
) -> dict[str, int]:
    """The per-trial cost metrics: ``macs_per_clip`` and ``train_step_peak_bytes`` (at the
    trial's batch and input shape), and the clip shape they were counted at."""
    return {
        "macs_per_clip": macs_per_clip(model, clip_shape),
        "train_step_peak_bytes": train_step_peak_bytes(model, batch, clip_shape, num_classes),
        "cost_clip_shape": "x".join(map(str, clip_shape)),
    }
