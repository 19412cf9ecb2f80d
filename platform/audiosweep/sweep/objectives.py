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
    model at the sweep measurement's input shape (`sweep.throughput.input_shape`)."""
    import torch

    from audiosweep.models import create_model_from_config
    from audiosweep.models.dcls_substitution import spread_positions
    from audiosweep.sweep.throughput import input_shape
    from audiosweep.train.side_by_side import Timed, paired_ratio, time_interleaved

    shape = input_shape(cfg)
    with torch.random.fork_rng():  # leave the caller's random streams as they were
        torch.manual_seed(0)
        model = spread_positions(create_model_from_config(cfg, num_classes))
        dsc = create_model_from_config(cfg.with_overrides({"model.conv": "dsc"}), num_classes)
        entries = [
            Timed("model", model, modes=("inference",)),
            Timed("model_cl", _channels_last(model), True, modes=("inference",)),
            Timed("dsc", dsc, modes=("inference",)),
            Timed("dsc_cl", _channels_last(dsc), True, modes=("inference",)),
        ]
        x = torch.randn(*shape)
        time_interleaved(
            entries,
            modes=("inference",),
            x=x,
            target=torch.zeros(shape[0], num_classes),
            repeats=max(MIN_REPEATS, cfg.bench.repeats),
        )
    seconds = {e.name: e.seconds["inference"] for e in entries}
    best = {
        name: [min(a, b) for a, b in zip(seconds[name], seconds[f"{name}_cl"], strict=True)]
        for name in ("model", "dsc")
    }
    return {
        THROUGHPUT_RATIO: paired_ratio(best["dsc"], best["model"]),
        "objective_infer_samples_per_s": shape[0] / statistics.median(best["model"]),
        "objective_dsc_infer_samples_per_s": shape[0] / statistics.median(best["dsc"]),
    }


def _channels_last(model):
    import torch

    return copy.deepcopy(model).to(memory_format=torch.channels_last)
