"""The report of a single-label (scene classification) sweep: SP4ASC's Table 2 rebuilt.

Per system (case + ``sweep.label``): log loss (lower is better) and accuracy, mean ± std over
seeds, of the plain predictions and of the test-time augmented ones (30 SpecAugment draws);
per system with a DSC and a DCLS variant, the DCLS − DSC differences with Welch t-tests; and the
report's published rows beside them.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from audiosweep.sweep import tables

# Table 2 and section 4 of Puy, Jain & Bursuc, "Separable convolutions and test-time
# augmentations for low-complexity and calibrated acoustic scene classification" (DCASE 2021
# task 1a technical report): TAU Urban Acoustic Scenes 2020 Mobile, validation split, one run
# each. System 3's accuracy with TTA is 68.7 % in Table 2 and 68.3 % in section 4.
PAPER_ROWS = [
    {"system": "1 ce_tta", "label": "ce", "log_loss": 1.10, "accuracy": 65.8,
     "log_loss_tta": 0.90, "accuracy_tta": 66.8},
    {"system": "2 ce_mu_tta", "label": "mixup", "log_loss": 0.96, "accuracy": 66.2,
     "log_loss_tta": 0.93, "accuracy_tta": 66.2},
    {"system": "3 fl_tta", "label": "focal", "log_loss": 0.95, "accuracy": 66.7,
     "log_loss_tta": 0.88, "accuracy_tta": 68.7},
]  # fmt: skip

METHOD = {"dsc": "DSC", "dcls_gauss": "DCLS-Gauss", "dcls_bilinear": "DCLS-bilinear"}
# (row key prefix, trial metric): what each system aggregates over its seeds.
SERIES = (
    ("log_loss", "final_log_loss"),
    ("accuracy", "final_accuracy"),
    ("log_loss_tta", "final_log_loss_tta"),
    ("accuracy_tta", "final_accuracy_tta"),
)


def build_rows(finished: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict]] = {}
    for t in finished:
        key = (t["arch"], t["conv"], t["kernel_size"], t["kernel_count"], t.get("label") or "")
        groups.setdefault(key, []).append(t)
    rows = []
    for (arch, conv, ks, kc, label), members in sorted(groups.items()):
        thr = [m["infer_samples_per_s"] for m in members if m["infer_samples_per_s"]]
        row: dict[str, Any] = {
            "arch": arch,
            "model_arch": members[0]["model_arch"],
            "conv": conv,
            "label": label,
            "method": METHOD.get(conv, conv),
            "kernel": "3 taps, dilation 2" if conv == "dsc" else f"{kc} taps over {ks}",
            "kernel_size": ks,
            "kernel_count": kc,
            "params": members[0]["params_total"],
            "seeds": len(members),
            "infer_samples_per_s": statistics.median(thr) if thr else math.nan,
        }
        for name, metric in SERIES:
            values = [m[metric] for m in members if m.get(metric) is not None]
            row[f"{name}_mean"], row[f"{name}_std"] = tables.mean_std(values)
            row[f"{name}_values"] = values
        rows.append(row)
    return rows


def _welch(a: list[float], b: list[float]) -> float:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def dcls_vs_dsc(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system (arch + label) with both: DCLS − DSC in accuracy and log loss, TTA included
    when the trials evaluated it, with Welch p-values over seeds."""
    out = []
    for other in (r for r in rows if r["conv"] != "dsc"):
        for base in rows:
            if (base["conv"], base["arch"], base["label"]) != (
                "dsc",
                other["arch"],
                other["label"],
            ):
                continue
            tta = "_tta" if other["accuracy_tta_values"] and base["accuracy_tta_values"] else ""
            acc_a, acc_b = other[f"accuracy{tta}_values"], base[f"accuracy{tta}_values"]
            ll_a, ll_b = other[f"log_loss{tta}_values"], base[f"log_loss{tta}_values"]
            out.append(
                {
                    "arch": other["arch"],
                    "label": other["label"],
                    "method": f"{other['method']} {other['kernel']}",
                    "tta": bool(tta),
                    "accuracy_diff": other[f"accuracy{tta}_mean"] - base[f"accuracy{tta}_mean"],
                    "accuracy_p": _welch(acc_a, acc_b),
                    "log_loss_diff": other[f"log_loss{tta}_mean"] - base[f"log_loss{tta}_mean"],
                    "log_loss_p": _welch(ll_a, ll_b),
                    "seeds": f"{len(acc_a)} vs {len(acc_b)}",
                    "throughput_ratio": other["infer_samples_per_s"] / base["infer_samples_per_s"]
                    if base["infer_samples_per_s"]
                    else math.nan,
                }
            )
    return out


def build(trials: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [t for t in trials if t["status"] == "FINISHED" and t["final_accuracy"] is not None]
    rows = build_rows(finished)

    def median(key: str) -> float:
        values = [t[key] for t in finished if t.get(key) is not None]
        return statistics.median(values) if values else math.nan

    return {
        "task": "singlelabel",
        "rows": rows,
        "diffs": dcls_vs_dsc(rows),
        "chance_accuracy": median("chance_accuracy"),
        "chance_log_loss": median("chance_log_loss"),
        "paper": PAPER_ROWS,
    }


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        f"## {rep['family']} — {rep['sweep_id']}",
        "",
        "Log loss (lower is better) and accuracy (%) on the eval split, mean ± std over seeds; "
        "TTA: the mean softmax of the SpecAugment draws.",
        "",
        *tables.markdown(
            (
                "model",
                "system",
                "method",
                "# param.",
                "log loss",
                "accuracy",
                "log loss, TTA",
                "accuracy, TTA",
                "seeds",
                "inference (samples/s)",
            ),
            (
                (
                    tables.model_name(r),
                    r["label"] or "–",
                    r["method"],
                    tables.cell(r["params"], ",.0f"),
                    tables.plus_minus(r, "log_loss", 1, ".3f"),
                    tables.plus_minus(r, "accuracy", 100, ".1f"),
                    tables.plus_minus(r, "log_loss_tta", 1, ".3f"),
                    tables.plus_minus(r, "accuracy_tta", 100, ".1f"),
                    r["seeds"],
                    tables.cell(r["infer_samples_per_s"], ".1f"),
                )
                for r in rep["rows"]
            ),
        ),
        "",
        f"Chance level: accuracy {tables.cell(100 * rep['chance_accuracy'], '.1f')} % and log "
        f"loss {tables.cell(rep['chance_log_loss'], '.3f')} (a model that knows only the eval "
        "split's class frequencies).",
    ]
    if rep["diffs"]:
        lines += [
            "",
            *tables.markdown(
                (
                    "model",
                    "system",
                    "method",
                    "TTA",
                    "Δ accuracy (points)",
                    "Welch p",
                    "Δ log loss",
                    "Welch p",
                    "seeds",
                    "throughput vs DSC",
                ),
                (
                    (
                        d["arch"],
                        d["label"] or "–",
                        d["method"],
                        "yes" if d["tta"] else "no",
                        tables.cell(100 * d["accuracy_diff"], "+.2f"),
                        tables.cell(d["accuracy_p"], ".3g"),
                        tables.cell(d["log_loss_diff"], "+.3f"),
                        tables.cell(d["log_loss_p"], ".3g"),
                        d["seeds"],
                        f"{tables.cell(d['throughput_ratio'], '.2f')}×",
                    )
                    for d in rep["diffs"]
                ),
            ),
        ]
    lines += [
        "",
        "Published (Table 2 and section 4 of the SP4ASC report, TAU Urban Acoustic Scenes 2020 "
        "Mobile validation split, one run each):",
        "",
        *tables.markdown(
            ("system", "label", "log loss", "accuracy", "log loss, TTA", "accuracy, TTA"),
            (
                (
                    p["system"],
                    p["label"],
                    f"{p['log_loss']:.2f}",
                    f"{p['accuracy']:.1f}",
                    f"{p['log_loss_tta']:.2f}",
                    f"{p['accuracy_tta']:.1f}",
                )
                for p in rep["paper"]
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


CSV_FIELDS = [
    "arch",
    "model_arch",
    "conv",
    "label",
    "method",
    "kernel_size",
    "kernel_count",
    "params",
    *(f"{name}_{stat}" for name, _ in SERIES for stat in ("mean", "std")),
    "seeds",
    "infer_samples_per_s",
]


def write_csv(rep: dict[str, Any], path: Path) -> Path:
    return tables.write_csv(rep["rows"], CSV_FIELDS, path)
