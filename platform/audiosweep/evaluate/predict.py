"""Class probabilities of a dataset split from a pool of model replicas (Ray Data actors).

Each replica holds the model on its device (a GPU when it was given one) and turns waveform
batches into probabilities the way a trial's evaluation does: the log-mel front end without
augmentation, the model under the trial's autocast, a sigmoid; with ``tta_views`` > 0 the mean
over that many SpecAugment views (`audio.test_time_augment`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from audiosweep.config import TrialConfig


class Predictor:
    """A Ray Data callable class: one model replica per actor."""

    def __init__(
        self,
        trial: dict[str, Any],
        num_classes: int,
        weights: list[Any],
        tta_views: int = 0,
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        import ray

        from audiosweep.models import create_model_from_config
        from audiosweep.train.recipe import build_inputs, resolve_amp
        from audiosweep.train.task import task_for

        torch.set_num_threads(max(1, threads))
        cfg = TrialConfig.from_dict(trial)
        # A GPU is visible only to an actor Ray gave one.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = create_model_from_config(cfg, num_classes)
        # `weights` wraps the object ref in a list, so that Ray hands the ref over unresolved
        # and every replica reads the one copy in the object store (a state dict also passes).
        state = weights[0]
        if isinstance(state, ray.ObjectRef):
            state = ray.get(state)
        model.load_state_dict(state, strict=True)
        self.model = model.to(self.device).eval()
        # The trial's own front end and SpecAugment (`augment.*` masks), so the replica's
        # test-time views are the ones the trial's evaluation draws.
        self.activation = task_for(cfg).activation
        inputs = build_inputs(
            cfg.with_overrides({"augment.tta_views": tta_views}),
            device=self.device,
            activation=self.activation,
        )
        self.frontend = inputs.frontend
        self.spec_augment = inputs.spec_augment
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        self.tta_views = tta_views
        torch.manual_seed(seed)  # the TTA views' masks

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        waveform = torch.from_numpy(np.asarray(batch["waveform"], dtype=np.float32))
        probs = predict_probabilities(
            self.model,
            self.frontend,
            waveform.to(self.device),
            activation=self.activation,
            amp_dtype=self.amp_dtype,
            tta_views=self.tta_views,
            spec_augment=self.spec_augment,
        )
        return {
            "clip_id": np.asarray(batch["clip_id"]),
            "scores": probs.float().cpu().numpy(),
            "target": np.asarray(batch["target"], dtype=np.float32),
        }


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    frontend: torch.nn.Module,
    waveform: torch.Tensor,
    *,
    activation: str,
    amp_dtype: torch.dtype | None = None,
    tta_views: int = 0,
    spec_augment: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Probabilities of (B, samples) waveforms as a trial's evaluation computes them: the
    front end without augmentation, the model under the trial's autocast, the task's
    activation; with `tta_views` > 0 the mean over that many SpecAugment views."""
    from audiosweep.audio import test_time_augment

    autocast = (
        torch.autocast(waveform.device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    with autocast:
        spec = frontend(waveform, augment=False)
        return test_time_augment(
            model, spec, tta_views, augment=spec_augment, activation=activation
        )
