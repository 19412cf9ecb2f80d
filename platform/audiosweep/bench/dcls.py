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
from collections.abc import Callable

import torch

from audiosweep.errors import ConfigError
from audiosweep.models.bake import bake_dcls
from audiosweep.models.dcls_substitution import spread_positions
from audiosweep.models.factory import create_model, get_arch
from audiosweep.train.side_by_side import DTYPES, MODES, Timed, paired_ratio, time_interleaved

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


def _build_variants(arch: str, include_reference: bool, reference_repeats: int) -> list[Timed]:
    dsc = create_model(arch, "dsc")
    fast = create_model(arch, "dcls_gauss", dcls_impl="fast")
    spread = spread_positions(copy.deepcopy(fast))
    variants = [
        Timed("dsc (NCHW)", dsc, False),
        Timed(
            "dsc (channels_last)", copy.deepcopy(dsc).to(memory_format=torch.channels_last), True
        ),
        Timed("dcls fast path", fast, False),
        Timed("dcls fast, spread P", spread, False),
        # The same trained-like model with each DCLS layer baked into the depthwise conv it
        # computes (`export --torch`): channels_last, as the fast path runs its convolutions.
        Timed(
            "dcls baked, spread P",
            bake_dcls(spread)[0].to(memory_format=torch.channels_last),
            True,
            modes=("inference",),
        ),
    ]
    if include_reference:
        reference = create_model(arch, "dcls_gauss", dcls_impl="reference")
        reference.load_state_dict(fast.state_dict())
        # Slow: no warm-up run, and only the first repeats.
        variants.insert(
            2,
            Timed("dcls package", reference, False, warmup=False, max_repeats=reference_repeats),
        )
    return variants


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
    device: str = "cpu",
    dtypes: tuple[str, ...] = ("float32",),
) -> dict:
    """Time each variant, per dtype (autocast for reduced ones); returns {"setup": ...,
    "results": [{mode, dtype, variant, median_s, samples_per_s, ...}]}. The logits' agreement
    is that of the first dtype's run."""
    if batch < 1 or repeats < 1 or reference_repeats < 0:
        raise ValueError("batch and repeats must be >= 1, reference_repeats >= 0")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise ConfigError(
            f"--dtypes: unknown {bad or 'none given'}; choose from {', '.join(DTYPES)}"
        )
    if get_arch(arch).family == "sp4asc":
        raise ValueError("bench dcls compares the 2-d backbones; sp4asc has no Dcls2d layers")
    try:
        where = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(
            f"--device {device}: not a torch device ({err}); use cpu or cuda"
        ) from err
    if where.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: torch sees no CUDA device here; run it on a GPU machine or "
            "pass --device cpu"
        )
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    variants = _build_variants(arch, reference_repeats > 0, reference_repeats)
    num_classes = variants[0].model.num_classes
    for v in variants:
        v.model.to(where)
    x = torch.randn(batch, 1, n_mels, frames, device=where)
    target = (torch.rand(batch, num_classes, device=where) < 0.05).float()
    setup = {
        "arch": arch,
        "input_shape": list(x.shape),
        "batch": batch,
        "dtype": ",".join(dtypes),
        "threads": torch.get_num_threads(),
        "device": str(where) if where.type == "cpu" else torch.cuda.get_device_name(where),
        "repeats": repeats,
        "reference_repeats": reference_repeats,
        "torch": torch.__version__,
    }
    log(
        f"bench dcls: {arch}, input {tuple(x.shape)} ({setup['dtype']}) on {setup['device']}, "
        f"batch {batch}, threads {setup['threads']}, repeats {repeats} (dcls package: "
        f"{reference_repeats}), DCLS-Gauss 23x23 / 26 elements; 'spread P': positions uniform "
        "over the grid"
    )
    results: list[dict] = []
    agreement: dict[str, float] = {}
    baked: float | None = None
    for i, dtype in enumerate(dtypes):
        for v in variants:
            v.seconds, v.outputs = {m: [] for m in MODES}, {}
        if len(dtypes) > 1:
            log(f"{dtype}:")
        time_interleaved(
            variants, modes=modes, x=x, target=target, repeats=repeats, dtype=dtype, log=log
        )
        results += _results(variants, modes, batch, dtype)
        if i == 0:
            agreement, baked = _agreement(variants), _baked_agreement(variants)
    _print_table(results, agreement, log)
    if baked is not None:
        log(f"baked vs fast path (spread P), inference logits: max rel diff {baked:.2e}")
    return {
        "setup": setup,
        "results": results,
        "fast_vs_package_max_rel_diff": agreement,
        "baked_vs_fast_max_rel_diff": baked,
    }


def _results(variants: list[Timed], modes: tuple[str, ...], batch: int, dtype: str) -> list[dict]:
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
            results.append(
                {
                    "mode": mode,
                    "dtype": dtype,
                    "variant": v.name,
                    "median_s": medians[v.name],
                    "min_s": minima[v.name],
                    "samples_per_s": batch / medians[v.name],
                    "ratio_to_best_dsc": best_median / medians[v.name],
                    "ratio_to_best_dsc_min": best_min / minima[v.name],
                    # The dcls-package variant runs in the first repeats only.
                    "ratio_to_best_dsc_paired": paired_ratio(dsc_per_repeat, v.seconds[mode]),
                    "runs": len(v.seconds[mode]),
                }
            )
    return results


def _baked_agreement(variants: list[Timed]) -> float | None:
    """Max |baked - fast| / max |fast| of the last inference outputs (spread positions)."""
    by_name = {v.name: v for v in variants}
    fast = by_name["dcls fast, spread P"].outputs.get("inference")
    baked = by_name["dcls baked, spread P"].outputs.get("inference")
    if fast is None or baked is None:
        return None
    return _max_rel_diff(baked, fast)


def _max_rel_diff(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out - reference).abs().max() / reference.abs().max()).item()


def _agreement(variants: list[Timed]) -> dict[str, float]:
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
        f"{'mode':10s} {'dtype':9s} {'variant':22s} {'median s':>9s} {'samples/s':>10s} {'x best dsc':>10s}"
        f" {'min s':>8s} {'x (min)':>8s} {'x paired':>8s} {'runs':>5s}"
    )
    for row in results:
        log(
            f"{row['mode']:10s} {row['dtype']:9s} {row['variant']:22s} {row['median_s']:9.3f} "
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
            "dtype": row["dtype"],
            "threads": setup["threads"],
            "device": setup["device"],
            "repeats": setup["repeats"],
            "reference_repeats": setup["reference_repeats"],
        }
        for row in result["results"]
    ]
