"""Inference cost as a search objective: the trial's model against DSC, timed side by side.

A trial's own end-of-run throughput (``infer_samples_per_s``) is measured while other trials
share the machine, so it moves with their load, not only with the configuration. The objective
is instead a paired ratio taken in the trial's process: the configuration's model and the DSC
model of the same architecture take turns on the same input, repeat after repeat, and the
median of the per-repeat ratios (DSC seconds / model seconds) is what the searcher gets. Load
falls on both alike, so the ratio is stable where the absolute figure is not; DSC is 1.0 by
construction, above 1 is faster than DSC.

Each model is timed in both memory layouts (NCHW and channels_last input) and each repeat
takes its faster one, as `audiosweep bench dcls` does for DSC: the fast DCLS path runs its
convolutions channels_last whatever its input, so a DSC slowed by its layout would flatter DCLS
(and a DSC configuration compared with itself is 1.0 only when both sides get the same choice).

Both models are built fresh from the config (weights do not change the cost). A DCLS model's
positions are spread over the whole dilated kernel first, as training leaves them: at
initialisation they sit near the centre and the fast path would crop the empty border away,
timing a cheaper kernel than the trained model runs.
"""

from __future__ import annotations

import copy
import statistics

from audiosweep.config import TrialConfig

THROUGHPUT_RATIO = "throughput_ratio_vs_dsc"
# Few but not one: the median of five paired repeats shrugs off one disturbed repeat.
MIN_REPEATS = 5


def throughput_vs_dsc(cfg: TrialConfig, num_classes: int) -> dict[str, float]:
    """``throughput_ratio_vs_dsc`` and the two models' samples/s (medians) for ``cfg``'s
    model at the bench input shape (``bench.batch`` × ``audio.n_mels`` × ``bench.frames``)."""
    import torch

    from audiosweep.bench.dcls import spread_positions, time_interleaved
    from audiosweep.models import create_model_from_config

    batch = cfg.bench.batch
    with torch.random.fork_rng():  # leave the caller's random streams as they were
        torch.manual_seed(0)
        model = spread_positions(create_model_from_config(cfg, num_classes))
        dsc = create_model_from_config(cfg.with_overrides({"model.conv": "dsc"}), num_classes)
        models = {
            "model": model,
            "model_cl": copy.deepcopy(model).to(memory_format=torch.channels_last),
            "dsc": dsc,
            "dsc_cl": copy.deepcopy(dsc).to(memory_format=torch.channels_last),
        }
        x = torch.randn(batch, 1, cfg.audio.n_mels, cfg.bench.frames)
        seconds = time_interleaved(
            models,
            x,
            max(MIN_REPEATS, cfg.bench.repeats),
            channels_last=frozenset({"model_cl", "dsc_cl"}),
        )
    best = {
        name: [min(a, b) for a, b in zip(seconds[name], seconds[f"{name}_cl"], strict=True)]
        for name in ("model", "dsc")
    }
    paired = [d / m for d, m in zip(best["dsc"], best["model"], strict=True)]
    return {
        THROUGHPUT_RATIO: statistics.median(paired),
        "objective_infer_samples_per_s": batch / statistics.median(best["model"]),
        "objective_dsc_infer_samples_per_s": batch / statistics.median(best["dsc"]),
    }
