"""The accuracy-vs-cost part of a sweep's report: the Pareto front of eval mAP against
inference throughput.

Each configuration the search tried is one point: its mAP (the mean over its seeds, for a seed
group) and its throughput as the paired ratio to DSC that the trial measured
(``throughput_ratio_vs_dsc``, sweep/objectives.py; DSC is 1.0). The front is the configurations
no other configuration beats in both. Sweeps without that metric have no Pareto section.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from audiosweep import tracking
from audiosweep.sweep import tables
from audiosweep.sweep.objectives import THROUGHPUT_RATIO

# Params that differ between configurations without making them different configurations.
NOT_CONFIG = {"name", "train.seed", "sweep.group_seeds", "run_root"}
CSV_FIELDS = ["case", "config", "map_mean", "map_std", "seeds", "throughput_ratio", "samples_per_s"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the points that no other point dominates, both coordinates
    maximised: q dominates p when q is at least as good in both and better in one. Equal
    points do not dominate each other, so both stay."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front = []
    best_y_right = -math.inf  # the best y among points with a strictly larger x
    for _, same_x in itertools.groupby(order, key=lambda i: points[i][0]):
        group = list(same_x)
        top = points[group[0]][1]  # sorted by y within the same x
        for i in group:
            y = points[i][1]
            if y == top and y > best_y_right:
                front.append(i)
        best_y_right = max(best_y_right, top)
    return sorted(front)


def fetch_configs(mlflow, family: str, sweep_id: str) -> list[dict[str, Any]]:
    """One row per finished configuration that measured the throughput objective: its seed
    group's run, or its trial run when each configuration ran with one seed."""
    exp = mlflow.get_experiment_by_name(family)
    if exp is None:
        return []
    runs = []
    for role in ("group", "trial"):
        runs = mlflow.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{tracking.SWEEP_TAG}` = '{sweep_id}' and "
            f"tags.`{tracking.ROLE_TAG}` = '{role}' and attributes.status = 'FINISHED'",
            max_results=5000,
        )
        runs = [r for r in runs if THROUGHPUT_RATIO in r.data.metrics]
        if runs:
            break
    rows = []
    for run in runs:
        m = run.data.metrics
        rows.append(
            {
                "run_id": run.info.run_id,
                "case": run.data.tags.get("case", "?"),
                "conv": run.data.tags.get("conv", "?"),
                "params": {k: v for k, v in run.data.params.items() if k not in NOT_CONFIG},
                "map_mean": m.get("final_map", math.nan),
                "map_std": m.get("final_map_std", math.nan),
                "seeds": int(m.get("seeds", 1)),
                "throughput_ratio": m[THROUGHPUT_RATIO],
                "samples_per_s": m.get("objective_infer_samples_per_s", math.nan),
                "dsc_samples_per_s": m.get("objective_dsc_infer_samples_per_s", math.nan),
            }
        )
    return rows


def build(mlflow, family: str, sweep_id: str) -> dict[str, Any] | None:
    """The Pareto section's data (None when no configuration measured the objective)."""
    configs = fetch_configs(mlflow, family, sweep_id)
    if not configs:
        return None
    # The searched values: the params whose values differ between configurations.
    keys = sorted(
        k
        for k in set().union(*(c["params"] for c in configs))
        if len({c["params"].get(k) for c in configs}) > 1
    )
    for c in configs:
        c["config"] = " ".join(f"{k}={_short(c['params'].get(k))}" for k in keys)
    valid = [
        c for c in configs if math.isfinite(c["map_mean"]) and math.isfinite(c["throughput_ratio"])
    ]
    on_front = pareto_front([(c["throughput_ratio"], c["map_mean"]) for c in valid])
    front = sorted((valid[i] for i in on_front), key=lambda c: -c["throughput_ratio"])
    for c in configs:
        c["on_front"] = any(c is f for f in front)
    return {"configs": configs, "front": front, "keys": keys}


def _short(value: str | None) -> str:
    """A param as MLflow keeps it (text), a float to 3 significant digits."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return value if number.is_integer() and "." not in value else f"{number:.3g}"


def markdown(pareto: dict[str, Any]) -> list[str]:
    front, configs = pareto["front"], pareto["configs"]
    return [
        "",
        "### Pareto front: eval mAP against inference throughput",
        "",
        f"{len(front)} of {len(configs)} configurations are on the front (no other has both a "
        "higher mAP and a higher throughput). Throughput is the paired ratio to DSC of the same "
        "architecture, timed side by side in each trial (DSC = 1.00×).",
        "",
        *tables.markdown(
            (
                "case",
                "configuration",
                "mAP (mean ± std)",
                "seeds",
                "throughput vs DSC",
                "samples/s",
            ),
            (
                (
                    c["case"],
                    c["config"] or "–",
                    tables.plus_minus(c, "map", 100, ".2f"),
                    c["seeds"],
                    f"{tables.cell(c['throughput_ratio'], '.2f')}×",
                    tables.cell(c["samples_per_s"], ".1f"),
                )
                for c in front
            ),
        ),
    ]


def write_csv(pareto: dict[str, Any], path: Path) -> Path:
    return tables.write_csv(pareto["front"], CSV_FIELDS, path)


def plot(pareto: dict[str, Any], out: Path, title: str = "") -> Path:
    """mAP against throughput ratio: every configuration in grey, the front in red and joined,
    DSC's throughput (1.0) drawn across as the reference."""
    from audiosweep.train.plots import plt  # pyplot on the headless backend

    configs = [c for c in pareto["configs"] if math.isfinite(c["map_mean"])]
    front = pareto["front"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter(
        [c["throughput_ratio"] for c in configs],
        [c["map_mean"] for c in configs],
        color="0.65",
        s=22,
        label="configurations",
        zorder=2,
    )
    ax.plot(
        [c["throughput_ratio"] for c in front],
        [c["map_mean"] for c in front],
        color="C3",
        marker="o",
        markersize=6,
        label="Pareto front",
        zorder=3,
    )
    ax.errorbar(
        [c["throughput_ratio"] for c in front],
        [c["map_mean"] for c in front],
        yerr=[0.0 if math.isnan(c["map_std"]) else c["map_std"] for c in front],
        fmt="none",
        ecolor="C3",
        capsize=3,
        zorder=3,
    )
    dsc = [c for c in configs if c["conv"] == "dsc"]
    if dsc:  # DSC itself was one of the cases: its own point
        ax.scatter(
            [c["throughput_ratio"] for c in dsc],
            [c["map_mean"] for c in dsc],
            color="C0",
            marker="*",
            s=120,
            label="DSC",
            zorder=4,
        )
    ax.axvline(1.0, color="C0", linestyle="--", linewidth=1, label="DSC throughput (1.0×)")
    ax.set_xlabel("inference throughput vs DSC (paired ratio, higher is faster)")
    ax.set_ylabel("eval mAP (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
