"""`audiosweep bench dcls`: DSC vs DCLS (dcls package) vs DCLS (fast path) vs DCLS baked into
plain depthwise convolutions (inference), side by side.

Every repeat times one batch of each variant in turn, so that load from other processes falls
on all of them alike; the figures are medians over repeats. The `dcls` package variant is slow
(its kernel is rebuilt densely in every layer and forward), so it gets its own, smaller repeat
count and no warm-up run.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from audiosweep.models.bake import bake_dcls
from audiosweep.models.dcls_substitution import position_layers
from audiosweep.models.factory import create_model, get_arch

MODES = ("inference", "train")

# What the CSV calls each variant (docs/benchmarks/dcls_vs_dsc_*.csv name the fast path's two
# the same way).
CSV_VARIANTS = {
    "dsc (NCHW)": "dsc_nchw",
    "dsc (channels_last)": "dsc_channels_last",
    "dcls package": "dcls_package",
    "dcls fast path": "dcls_fast_positions_initialised",
    "dcls fast, spread P": "dcls_fast_positions_spread",
    "dcls baked, spread P": "dcls_baked_positions_spread",
}


@dataclass
class ModelVariant:
    name: str
    model: nn.Module
    channels_last_input: bool
    reference: bool = False
    modes: tuple[str, ...] = MODES  # a baked model is for inference only
    seconds: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


def spread_positions(model: nn.Module, seed: int = 0) -> nn.Module:
    """Positions drawn uniformly over the whole dilated grid, as they end up after training.

    At initialisation dcls draws positions near the kernel centre, so the Gaussian kernels have
    exact-zero borders that the fast path's eval cache crops away; spread positions give dense
    23x23 kernels and measure the worst case.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in position_layers(model):
            lim = layer.dilated_kernel_size[0] // 2
            draw = torch.rand(layer.P.shape, generator=generator) * 2 - 1
            layer.P.copy_(draw * lim)
    return model


def _build_variants(arch: str, include_reference: bool) -> list[ModelVariant]:
    dsc = create_model(arch, "dsc")
    fast = create_model(arch, "dcls_gauss", dcls_impl="fast")
    spread = spread_positions(copy.deepcopy(fast))
    variants = [
        ModelVariant("dsc (NCHW)", dsc, False),
        ModelVariant(
            "dsc (channels_last)", copy.deepcopy(dsc).to(memory_format=torch.channels_last), True
        ),
        ModelVariant("dcls fast path", fast, False),
        ModelVariant("dcls fast, spread P", spread, False),
        # The same trained-like model with each DCLS layer baked into the depthwise conv it
        # computes (`export --torch`): channels_last, as the fast path runs its convolutions.
        ModelVariant(
            "dcls baked, spread P",
            bake_dcls(spread)[0].to(memory_format=torch.channels_last),
            True,
            modes=("inference",),
        ),
    ]
    if include_reference:
        reference = create_model(arch, "dcls_gauss", dcls_impl="reference")
        reference.load_state_dict(fast.state_dict())
        variants.insert(2, ModelVariant("dcls package", reference, False, reference=True))
    return variants


def _run(
    variant: ModelVariant, mode: str, x: torch.Tensor, target: torch.Tensor | None
) -> tuple[float, torch.Tensor]:
    model = variant.model
    if variant.channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1234)  # same drop-path draws for every variant, so their logits compare
    start = time.perf_counter()
    if mode == "inference":
        with torch.no_grad():
            out = model(x)
    else:
        model.zero_grad(set_to_none=True)
        out = model(x)
        nn.functional.binary_cross_entropy_with_logits(out, target).backward()
    return time.perf_counter() - start, out.detach()


def time_interleaved(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    repeats: int,
    channels_last: frozenset[str] = frozenset(),
) -> dict[str, list[float]]:
    """Seconds of one inference forward of each model, per repeat: the models take turns within
    every repeat (after one warm-up pass each), so that load from other processes falls on all
    of them alike and a per-repeat ratio between two of them is a paired comparison. The models
    named in `channels_last` get their input in that memory format."""
    variants = [ModelVariant(name, m, name in channels_last) for name, m in models.items()]
    for variant in variants:
        variant.model.eval()
        for _ in range(2):  # warm-up: kernel caches, allocator, oneDNN's primitive cache
            _run(variant, "inference", x, None)
    for _ in range(max(1, repeats)):
        for variant in variants:
            variant.seconds["inference"].append(_run(variant, "inference", x, None)[0])
    return {v.name: v.seconds["inference"] for v in variants}


def run_dcls_bench(
    arch: str = "convnext_tiny",
    batch: int = 8,
    repeats: int = 3,
    reference_repeats: int = 1,
    n_mels: int = 128,
    frames: int = 1001,
    threads: int | None = None,
    modes: tuple[str, ...] = MODES,
    log: Callable[[str], None] = print,
) -> dict:
    """Time each variant; returns {"setup": ..., "results": [{mode, variant, median_s, samples_per_s, ...}]}."""
    if batch < 1 or repeats < 1 or reference_repeats < 0:
        raise ValueError("batch and repeats must be >= 1, reference_repeats >= 0")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    if get_arch(arch).family == "sp4asc":
        raise ValueError("bench dcls compares the 2-d backbones; sp4asc has no Dcls2d layers")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    variants = _build_variants(arch, include_reference=reference_repeats > 0)
    num_classes = variants[0].model.num_classes
    x = torch.randn(batch, 1, n_mels, frames)
    target = (torch.rand(batch, num_classes) < 0.05).float()
    setup = {
        "arch": arch,
        "input_shape": list(x.shape),
        "batch": batch,
        "dtype": str(x.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "repeats": repeats,
        "reference_repeats": reference_repeats,
        "torch": torch.__version__,
    }
    log(
        f"bench dcls: {arch}, input {tuple(x.shape)} ({setup['dtype']}), batch {batch}, "
        f"threads {setup['threads']}, repeats {repeats} (dcls package: {reference_repeats}), "
        f"DCLS-Gauss 23x23 / 26 elements; 'spread P': positions uniform over the grid"
    )
    for mode in modes:
        for variant in variants:
            variant.model.train(mode == "train")
            if not variant.reference and mode in variant.modes:
                _run(variant, mode, x, target)  # warm-up
        for r in range(repeats):
            for variant in variants:
                if (variant.reference and r >= reference_repeats) or mode not in variant.modes:
                    continue
                seconds, out = _run(variant, mode, x, target)
                variant.seconds[mode].append(seconds)
                variant.outputs[mode] = out
                log(f"  {mode:9s} repeat {r + 1}/{repeats} {variant.name:20s} {seconds:8.3f} s")
    results = []
    for mode in modes:
        timed = [v for v in variants if v.seconds[mode]]
        medians = {v.name: statistics.median(v.seconds[mode]) for v in timed}
        minima = {v.name: min(v.seconds[mode]) for v in timed}
        dsc = [v.name for v in timed if v.name.startswith("dsc")]
        best_median = min(medians[n] for n in dsc)
        best_min = min(minima[n] for n in dsc)
        dsc_runs = [v.seconds[mode] for v in timed if v.name in dsc]
        dsc_per_repeat = [min(ts) for ts in zip(*dsc_runs, strict=True)]
        for v in timed:
            # The dcls-package variant runs in the first repeats only.
            paired = [d / t for d, t in zip(dsc_per_repeat, v.seconds[mode], strict=False)]
            results.append(
                {
                    "mode": mode,
                    "variant": v.name,
                    "median_s": medians[v.name],
                    "min_s": minima[v.name],
                    "samples_per_s": batch / medians[v.name],
                    "ratio_to_best_dsc": best_median / medians[v.name],
                    "ratio_to_best_dsc_min": best_min / minima[v.name],
                    "ratio_to_best_dsc_paired": statistics.median(paired),
                    "runs": len(v.seconds[mode]),
                }
            )
    agreement = _agreement(variants)
    _print_table(results, agreement, log)
    baked = _baked_agreement(variants)
    if baked is not None:
        log(f"baked vs fast path (spread P), inference logits: max rel diff {baked:.2e}")
    return {
        "setup": setup,
        "results": results,
        "fast_vs_package_max_rel_diff": agreement,
        "baked_vs_fast_max_rel_diff": baked,
    }


def _baked_agreement(variants: list[ModelVariant]) -> float | None:
    """Max |baked - fast| / max |fast| of the last inference outputs (spread positions)."""
    by_name = {v.name: v for v in variants}
    fast = by_name["dcls fast, spread P"].outputs.get("inference")
    baked = by_name["dcls baked, spread P"].outputs.get("inference")
    if fast is None or baked is None:
        return None
    return _max_rel_diff(baked, fast)


def _max_rel_diff(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out - reference).abs().max() / reference.abs().max()).item()


def _agreement(variants: list[ModelVariant]) -> dict[str, float]:
    """Max |fast - package| / max |package| of the last outputs (same weights, same input)."""
    by_name = {v.name: v for v in variants}
    if "dcls package" not in by_name:
        return {}
    fast, reference = by_name["dcls fast path"], by_name["dcls package"]
    diffs = {}
    for mode, ref_out in reference.outputs.items():
        fast_out = fast.outputs[mode]
        diffs[mode] = _max_rel_diff(fast_out, ref_out)
    return diffs


def _print_table(
    results: list[dict], agreement: dict[str, float], log: Callable[[str], None]
) -> None:
    log("")
    log(
        f"{'mode':10s} {'variant':22s} {'median s':>9s} {'samples/s':>10s} {'x best dsc':>10s}"
        f" {'min s':>8s} {'x (min)':>8s} {'x paired':>8s} {'runs':>5s}"
    )
    for row in results:
        log(
            f"{row['mode']:10s} {row['variant']:22s} {row['median_s']:9.3f} "
            f"{row['samples_per_s']:10.2f} {row['ratio_to_best_dsc']:10.3f} "
            f"{row['min_s']:8.3f} {row['ratio_to_best_dsc_min']:8.3f} "
            f"{row['ratio_to_best_dsc_paired']:8.3f} {row['runs']:5d}"
        )
    log(
        "x best dsc: time of DSC in its faster memory format / this variant's, from medians; "
        "x (min): from the fastest runs; x paired: median over repeats of that ratio within "
        "each repeat"
    )
    for mode, diff in agreement.items():
        log(f"fast path vs dcls package, {mode} logits: max rel diff {diff:.2e}")


def csv_rows(result: dict) -> list[dict]:
    """One row per mode and variant. `x_dsc`: the best DSC's median time over this variant's
    (docs' "x DSC"); `fast_vs_package_max_rel_diff`: the mode's logit agreement, empty without
    the dcls-package variant."""
    setup = result["setup"]
    agreement = result["fast_vs_package_max_rel_diff"]
    return [
        {
            "mode": row["mode"],
            "variant": CSV_VARIANTS[row["variant"]],
            "median_s": row["median_s"],
            "min_s": row["min_s"],
            "samples_per_s": row["samples_per_s"],
            "x_dsc": row["ratio_to_best_dsc"],
            "x_dsc_min": row["ratio_to_best_dsc_min"],
            "x_dsc_paired": row["ratio_to_best_dsc_paired"],
            "runs": row["runs"],
            "fast_vs_package_max_rel_diff": agreement.get(row["mode"]),
            "arch": setup["arch"],
            "input_shape": "x".join(map(str, setup["input_shape"])),
            "batch": setup["batch"],
            "dtype": setup["dtype"],
            "threads": setup["threads"],
            "device": setup["device"],
            "repeats": setup["repeats"],
            "reference_repeats": setup["reference_repeats"],
        }
        for row in result["results"]
    ]
