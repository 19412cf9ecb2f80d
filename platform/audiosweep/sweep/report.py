"""The paper's Table 1 rebuilt from MLflow: per case mAP mean ± std over seeds, parameters,
cost per clip and throughput, and per architecture the DCLS − DSC difference with a Welch t-test.

Throughput comes from the sweep's controlled side-by-side measurement on its parent run
(`sweep/throughput.py`), never from the trials, which timed themselves on shared cores.

Single-label sweeps (``data.task=singlelabel``, e.g. SP4ASC on scenes) get accuracy and log
loss instead of mAP: `sweep.report_scenes`."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from audiosweep import tracking
from audiosweep.sweep import tables, throughput

# Table 1 of Khalfaoui-Hassani, Masquelier & Pellegrini, "Audio classification with Dilated
# Convolution with Learnable Spacings" (NeurIPS 2023 ML4Audio workshop, arXiv 2309.13972):
# AudioSet eval mAP (mean ± std over 3 seeds), parameters and V100 throughput as published.
PAPER_ROWS = [
    {
        "arch": "convformer_s18",
        "conv": "dsc",
        "kernel": "7² / 49",
        "params": "26.8M",
        "map": "43.14 ± 0.03",
        "throughput": 513.3,
    },
    {
        "arch": "convformer_s18",
        "conv": "dcls_gauss",
        "kernel": "23² / 26",
        "params": "26.8M",
        "map": "43.68 ± 0.02",
        "throughput": 396.8,
    },
    {
        "arch": "fastvit_sa24",
        "conv": "dsc",
        "kernel": "7² / 49",
        "params": "21.5M",
        "map": "43.82 ± 0.05",
        "throughput": 633.6,
    },
    {
        "arch": "fastvit_sa24",
        "conv": "dcls_gauss",
        "kernel": "23² / 26",
        "params": "21.5M",
        "map": "44.4 ± 0.07",
        "throughput": 551.7,
    },
    {
        "arch": "convnext_tiny",
        "conv": "dsc",
        "kernel": "7² / 49",
        "params": "28.6M",
        "map": "44.83 ± 0.14",
        "throughput": 591.4,
    },
    {
        "arch": "convnext_tiny",
        "conv": "dcls_gauss",
        "kernel": "23² / 26",
        "params": "28.6M",
        "map": "45.52 ± 0.05",
        "throughput": 509.4,
    },
]

METHOD = {"dsc": "Depth. Conv.", "dcls_gauss": "DCLS-Gauss", "dcls_bilinear": "DCLS-bilinear"}


def fetch_trials(mlflow, family: str, sweep_id: str) -> list[dict[str, Any]]:
    exp = mlflow.get_experiment_by_name(family)
    if exp is None:
        return []
    runs = mlflow.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{tracking.SWEEP_TAG}` = '{sweep_id}' and tags.`{tracking.ROLE_TAG}` = 'trial'",
        max_results=5000,
    )
    trials = []
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        conv = tags.get("conv", params.get("model.conv", "?"))
        dsc = conv == "dsc"
        trials.append(
            {
                "run_id": run.info.run_id,
                "status": run.info.status,
                "trial_key": tags.get(tracking.TRIAL_TAG),
                "arch": tags.get("arch", params.get("model.arch", "?")),
                "model_arch": tags.get("model_arch", params.get("model.arch", "?")),
                "conv": conv,
                "seed": int(tags.get("seed", params.get("train.seed", 0))),
                "kernel_size": 7 if dsc else int(params.get("model.dilated_kernel_size", 0)),
                "kernel_count": 49 if dsc else int(params.get("model.kernel_count", 0)),
                "final_map": metrics.get("final_map", metrics.get("eval_map")),
                "chance_map": metrics.get("eval_chance_map"),
                "best_map": metrics.get("best_map"),
                "params_total": metrics.get("params_total"),
                "params_dcls_positions": metrics.get("params_dcls_positions"),
                "infer_samples_per_s": metrics.get("infer_samples_per_s"),
                "train_samples_per_s": metrics.get("train_samples_per_s"),
                "macs_per_clip": metrics.get("macs_per_clip"),
                "train_step_peak_bytes": metrics.get("train_step_peak_bytes"),
                "wall_time_s": metrics.get("wall_time_s"),
                "task": params.get("data.task", "multilabel"),
                "label": params.get("sweep.label", ""),
                "final_accuracy": metrics.get("final_accuracy"),
                "final_log_loss": metrics.get("final_log_loss"),
                "final_accuracy_tta": metrics.get("final_accuracy_tta"),
                "final_log_loss_tta": metrics.get("final_log_loss_tta"),
                "chance_accuracy": metrics.get("eval_chance_accuracy"),
                "chance_log_loss": metrics.get("eval_chance_log_loss"),
                "infer_shape": tags.get("infer_shape"),
                "infer_threads": tags.get("infer_threads"),
                "dataset": tags.get(tracking.DATASET_TAG),
            }
        )
    return sorted(
        trials, key=lambda t: (t["arch"], t["conv"], t["kernel_size"], t["kernel_count"], t["seed"])
    )


def build_report(mlflow, family: str, sweep_id: str) -> dict[str, Any]:
    trials = fetch_trials(mlflow, family, sweep_id)
    if any(t["task"] == "singlelabel" for t in trials):
        from audiosweep.sweep import report_scenes

        rep = report_scenes.build([t for t in trials if t["task"] == "singlelabel"])
        controlled = fetch_throughput(mlflow, family, sweep_id)
        throughput.attach(rep["rows"], controlled)
        rep["diffs"] = report_scenes.dcls_vs_dsc(rep["rows"])
        return {
            "family": family,
            "sweep_id": sweep_id,
            "trials": trials,
            "datasets": datasets_of(trials),
            **rep,
            "throughput": controlled,
        }
    finished = [t for t in trials if t["status"] == "FINISHED" and t["final_map"] is not None]
    groups: dict[tuple, list[dict]] = {}
    for t in finished:
        groups.setdefault((t["arch"], t["conv"], t["kernel_size"], t["kernel_count"]), []).append(t)
    rows = []
    for (arch, conv, ks, kc), members in groups.items():
        maps = [m["final_map"] for m in members]
        mean, std = tables.mean_std(maps)
        thr = [m["infer_samples_per_s"] for m in members if m["infer_samples_per_s"]]
        rows.append(
            {
                "arch": arch,
                "model_arch": members[0]["model_arch"],
                "conv": conv,
                "method": METHOD.get(conv, conv),
                "kernel": f"{ks}² / {kc}",
                "kernel_size": ks,
                "kernel_count": kc,
                "params": members[0]["params_total"],
                "map_mean": mean,
                "map_std": std,
                "seeds": len(members),
                "maps": maps,
                "infer_samples_per_s": statistics.median(thr) if thr else math.nan,
                **cost_of(members),
            }
        )
    controlled = fetch_throughput(mlflow, family, sweep_id)
    throughput.attach(rows, controlled)
    chances = [t["chance_map"] for t in finished if t["chance_map"] is not None]
    chance = statistics.median(chances) if chances else math.nan
    for row in rows:
        row["x_chance"] = row["map_mean"] / chance if chance else math.nan
    from audiosweep.sweep import report_pareto

    return {
        "pareto": report_pareto.build(mlflow, family, sweep_id),
        "family": family,
        "sweep_id": sweep_id,
        "chance_map": chance,
        "rows": rows,
        "diffs": dcls_vs_dsc(rows),
        "trials": trials,
        "datasets": datasets_of(trials),
        "paper": PAPER_ROWS,
        "throughput": controlled,
    }


def fetch_throughput(mlflow, family: str, sweep_id: str) -> dict[str, Any] | None:
    """The controlled throughput measurement logged to the sweep's parent run, if any."""
    exp = mlflow.get_experiment_by_name(family)
    parent = exp and tracking.find_run(
        mlflow, exp.experiment_id, {tracking.SWEEP_TAG: sweep_id, tracking.ROLE_TAG: "sweep"}
    )
    if not parent:
        return None
    return throughput.from_run(parent.data.metrics, parent.data.tags)


def cost_of(members: list[dict[str, Any]]) -> dict[str, float]:
    """A case's MACs per clip and training-step peak memory: medians over its trials (equal
    but for the trials' batch sizes)."""
    out = {}
    for key in ("macs_per_clip", "train_step_peak_bytes"):
        values = [m[key] for m in members if m.get(key) is not None]
        out[key] = statistics.median(values) if values else math.nan
    return out


def _speed_ratio(other: dict[str, Any], base: dict[str, Any], mode: str) -> float:
    """The paired ratio of the controlled measurement; else the ratio of the two medians."""
    paired = other.get(f"{mode}_x_dsc", math.nan)
    if not math.isnan(paired):
        return paired
    a, b = other.get(f"{mode}_samples_per_s"), base.get(f"{mode}_samples_per_s")
    return a / b if a and b else math.nan


def datasets_of(trials: list[dict[str, Any]]) -> dict[str, int]:
    """Trials per dataset fingerprint (``unknown``: a run logged without one)."""
    counts: dict[str, int] = {}
    for t in trials:
        key = t.get("dataset") or "unknown"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def dataset_line(rep: dict[str, Any]) -> str:
    """The line under the table naming the dataset the scores were computed on."""
    datasets = rep.get("datasets") or {}
    if len(datasets) == 1:
        ((fp, n),) = datasets.items()
        return f"Dataset fingerprint: {fp} ({n} trial{'s' if n != 1 else ''})."
    if not datasets:
        return "Dataset fingerprint: no trials."
    listed = ", ".join(f"{fp} ({n})" for fp, n in datasets.items())
    return f"Dataset fingerprints differ between trials: {listed}; their scores do not compare."


def compare_datasets(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Whether two reports' scores were computed on the same dataset."""
    da, db = set(a.get("datasets") or {}), set(b.get("datasets") or {})
    names = f"{a['sweep_id']} and {b['sweep_id']}"
    if da == db and len(da) == 1 and "unknown" not in da:
        return f"{names} used the same dataset ({next(iter(da))}): their scores compare."
    return (
        f"{names} used different datasets ({', '.join(sorted(da)) or 'none'} vs "
        f"{', '.join(sorted(db)) or 'none'}): their scores do not compare."
    )


def dcls_vs_dsc(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arch: DCLS − DSC mAP and the Welch t-test p-value over seeds (NaN with < 2 seeds)."""
    from scipy import stats

    out = []
    for arch in sorted({r["arch"] for r in rows}):
        dsc = [r for r in rows if r["arch"] == arch and r["conv"] == "dsc"]
        for other in (r for r in rows if r["arch"] == arch and r["conv"] != "dsc"):
            for base in dsc:
                a, b = other["maps"], base["maps"]
                p = math.nan
                if len(a) > 1 and len(b) > 1:
                    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
                out.append(
                    {
                        "arch": arch,
                        "method": f"{other['method']} {other['kernel']}",
                        "diff": other["map_mean"] - base["map_mean"],
                        "p_value": p,
                        "seeds": f"{len(a)} vs {len(b)}",
                        "throughput_ratio": _speed_ratio(other, base, "infer"),
                        "train_throughput_ratio": _speed_ratio(other, base, "train"),
                    }
                )
    return out


COST_NOTE = (
    "Cost per trial (logged with each): MMACs / clip, torch's FLOP counter over an eval forward "
    "of one clip, halved (convolutions and matmuls; element-wise work not counted); "
    "train-step peak, the most tensor memory alive at once in one forward + loss + backward "
    "at the trial's batch, model included, optimiser state not (CUDA: the allocator's peak; "
    "CPU: every tensor storage followed from allocation to release)."
)


def markdown(rep: dict[str, Any]) -> str:
    if rep.get("task") == "singlelabel":
        from audiosweep.sweep import report_scenes

        return (
            report_scenes.markdown(rep)
            + "\n"
            + throughput.method_text(rep.get("throughput"))
            + "\n\n"
            + dataset_line(rep)
            + "\n"
        )
    lines = [
        f"## {rep['family']} — {rep['sweep_id']}",
        "",
        *tables.markdown(
            (
                "model",
                "ker. size / count",
                "method",
                "# param.",
                "mAP (mean ± std)",
                "× chance",
                "seeds",
                "inference (samples/s)",
                "train step (samples/s)",
                "MMACs / clip",
                "train-step peak (MB)",
            ),
            (
                (
                    tables.model_name(r),
                    r["kernel"],
                    r["method"],
                    tables.cell(r["params"], ",.0f"),
                    tables.plus_minus(r, "map", 100, ".2f"),
                    tables.cell(r.get("x_chance"), ".2f"),
                    r["seeds"],
                    tables.cell(r["infer_samples_per_s"], ".1f"),
                    tables.cell(r.get("train_samples_per_s"), ".1f"),
                    tables.cell(r.get("macs_per_clip", math.nan) / 1e6, ",.1f"),
                    tables.cell(r.get("train_step_peak_bytes", math.nan) / 1e6, ",.0f"),
                )
                for r in rep["rows"]
            ),
        ),
    ]
    chance = rep.get("chance_map", math.nan)
    lines += [
        "",
        dataset_line(rep),
        "",
        f"Chance level: {tables.cell(100 * chance, '.2f')} mAP points (the eval split's mean class "
        "prevalence, what random scores reach).",
    ]
    if rep["diffs"]:
        lines += [
            "",
            *tables.markdown(
                (
                    "model",
                    "method",
                    "ΔmAP vs DSC (points)",
                    "Welch p",
                    "seeds",
                    "inference vs DSC",
                    "train step vs DSC",
                ),
                (
                    (
                        d["arch"],
                        d["method"],
                        tables.cell(100 * d["diff"], "+.2f"),
                        tables.cell(d["p_value"], ".3g"),
                        d["seeds"],
                        f"{tables.cell(d['throughput_ratio'], '.2f')}×",
                        f"{tables.cell(d.get('train_throughput_ratio'), '.2f')}×",
                    )
                    for d in rep["diffs"]
                ),
            ),
        ]
    lines += ["", throughput.method_text(rep.get("throughput")), "", COST_NOTE]
    if rep.get("pareto"):
        from audiosweep.sweep import report_pareto

        lines += report_pareto.markdown(rep["pareto"])
    lines += [
        "",
        "Published (Table 1 of arXiv 2309.13972, AudioSet, V100 throughput):",
        "",
        *tables.markdown(
            ("model", "ker. size / count", "method", "# param.", "mAP", "throughput"),
            (
                (p["arch"], p["kernel"], METHOD[p["conv"]], p["params"], p["map"], p["throughput"])
                for p in rep["paper"]
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


CSV_FIELDS = [
    "arch",
    "model_arch",
    "conv",
    "method",
    "kernel_size",
    "kernel_count",
    "params",
    "map_mean",
    "map_std",
    "x_chance",
    "seeds",
    "infer_samples_per_s",
    "train_samples_per_s",
    "infer_x_dsc",
    "train_x_dsc",
    "macs_per_clip",
    "train_step_peak_bytes",
]


def write_csv(rep: dict[str, Any], path: Path) -> Path:
    if rep.get("task") == "singlelabel":
        from audiosweep.sweep import report_scenes

        return report_scenes.write_csv(rep, path)
    return tables.write_csv(rep["rows"], CSV_FIELDS, path)


def publish_to(mlflow, parent_run_id: str, rep: dict[str, Any], location: str) -> list[str]:
    """`publish` into a folder of the run root (a local path or a URI); returns what was
    written there."""
    import tempfile

    from audiosweep.storage import Folder, is_uri

    if not is_uri(location):
        return [str(p) for p in publish(mlflow, parent_run_id, rep, Path(location)).values()]
    folder = Folder(location)
    folder.makedirs()
    with tempfile.TemporaryDirectory() as tmp:
        paths = publish(mlflow, parent_run_id, rep, Path(tmp))
        for path in paths.values():
            folder.upload(path, path.name)
    return [f"{location}/{p.name}" for p in paths.values()]


def publish(mlflow, parent_run_id: str, rep: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.md / report.csv / report.png and log them to the sweep's parent run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "md": out_dir / "report.md",
        "csv": write_csv(rep, out_dir / "report.csv"),
    }
    paths["md"].write_text(markdown(rep))
    if rep["rows"] and rep.get("task") == "singlelabel":
        paths["png"] = report_bars(
            rep["rows"],
            out_dir / "report.png",
            title=rep["sweep_id"],
            chance=rep.get("chance_accuracy"),
            metric="accuracy_tta"
            if any(r["accuracy_tta_values"] for r in rep["rows"])
            else "accuracy",
        )
    elif rep["rows"]:
        paths["png"] = report_bars(
            rep["rows"],
            out_dir / "report.png",
            title=rep["sweep_id"],
            chance=rep.get("chance_map"),
        )
    if rep.get("pareto"):
        from audiosweep.sweep import report_pareto

        paths["pareto_csv"] = report_pareto.write_csv(rep["pareto"], out_dir / "pareto.csv")
        paths["pareto_png"] = report_pareto.plot(
            rep["pareto"], out_dir / "pareto.png", title=rep["sweep_id"]
        )
    for path in paths.values():
        mlflow.log_artifact(parent_run_id, str(path), artifact_path="report")
    return paths


def report_bars(
    rows: list[dict[str, Any]],
    out: Path,
    title: str = "",
    chance: float | None = None,
    metric: str = "map",
) -> Path:
    """``metric`` (mAP, or a single-label sweep's accuracy) mean ± std per case, grouped by
    architecture, on an axis from 0, with the chance level drawn across."""
    from audiosweep.train.plots import plt  # pyplot on the headless backend

    labels = [
        f"{r['arch']}\n{r['conv']}" + (f"\n{r['label']}" if r.get("label") else "") for r in rows
    ]
    means = [r[f"{metric}_mean"] for r in rows]
    stds = [
        0.0 if r[f"{metric}_std"] is None or math.isnan(r[f"{metric}_std"]) else r[f"{metric}_std"]
        for r in rows
    ]
    colors = ["C0" if r["conv"] == "dsc" else "C3" for r in rows]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows)), 3.8))
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ylabel = {"map": "eval mAP", "accuracy": "eval accuracy", "accuracy_tta": "accuracy, TTA"}
    ax.set_ylabel(f"{ylabel.get(metric, metric)} (mean ± std over seeds)")
    if chance is not None and not math.isnan(chance):
        ax.axhline(chance, color="0.3", linestyle="--", linewidth=1)
        ax.annotate(
            f"chance {chance:.3f}",
            (1.0, chance),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="0.3",
        )
    hi = max((m + s for m, s in zip(means, stds, strict=True)), default=1)
    ax.set_ylim(0.0, min(1.0, max(hi, chance or 0.0) * 1.15 + 0.01))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
