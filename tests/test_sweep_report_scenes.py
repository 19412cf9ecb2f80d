"""The single-label sweep report: SP4ASC's Table 2 per system, with and without TTA, from trials."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from audiosweep.sweep import report, report_scenes


def trial(conv: str, label: str, seed: int, acc: float, ll: float, tta: bool = True) -> dict:
    return {
        "status": "FINISHED",
        "arch": "sp4asc",
        "model_arch": "sp4asc",
        "conv": conv,
        "label": label,
        "seed": seed,
        "kernel_size": 7 if conv == "dsc" else 7,
        "kernel_count": 49 if conv == "dsc" else 3,
        "params_total": 62922,
        "infer_samples_per_s": 100.0 if conv == "dsc" else 50.0,
        "task": "singlelabel",
        "final_accuracy": acc,
        "final_log_loss": ll,
        "final_accuracy_tta": acc + 0.01 if tta else None,
        "final_log_loss_tta": ll - 0.1 if tta else None,
        "chance_accuracy": 0.1,
        "chance_log_loss": 2.302585,
    }


TRIALS = [
    trial("dsc", "ce", 0, 0.60, 1.10),
    trial("dsc", "ce", 1, 0.62, 1.00),
    trial("dsc", "focal", 0, 0.66, 0.95),
    trial("dsc", "focal", 1, 0.68, 0.91),
    trial("dcls_gauss", "focal", 0, 0.70, 0.90),
    trial("dcls_gauss", "focal", 1, 0.71, 0.85),
    {**trial("dsc", "ce", 2, 0.1, 9.0), "status": "FAILED"},
]


def test_rows_group_by_system_and_aggregate_both_evaluations() -> None:
    rep = report_scenes.build(TRIALS)
    rows = {(r["conv"], r["label"]): r for r in rep["rows"]}
    assert set(rows) == {("dsc", "ce"), ("dsc", "focal"), ("dcls_gauss", "focal")}
    ce = rows[("dsc", "ce")]
    assert ce["seeds"] == 2  # the failed trial is left out
    assert ce["accuracy_mean"] == pytest.approx(0.61)
    assert ce["log_loss_std"] == pytest.approx(statistics.stdev([1.10, 1.00]))
    assert ce["accuracy_tta_mean"] == pytest.approx(0.62)
    assert ce["log_loss_tta_mean"] == pytest.approx(0.95)
    assert rep["chance_accuracy"] == pytest.approx(0.1)


def test_dcls_vs_dsc_within_a_system_uses_the_tta_scores_and_welch() -> None:
    rep = report_scenes.build(TRIALS)
    (diff,) = rep["diffs"]
    assert diff["label"] == "focal" and diff["tta"] is True
    assert diff["accuracy_diff"] == pytest.approx((0.71 + 0.72) / 2 - (0.67 + 0.69) / 2)
    expected = stats.ttest_ind([0.71, 0.72], [0.67, 0.69], equal_var=False).pvalue
    assert diff["accuracy_p"] == pytest.approx(expected)
    assert diff["log_loss_diff"] == pytest.approx((0.80 + 0.75) / 2 - (0.85 + 0.81) / 2)
    assert diff["throughput_ratio"] == pytest.approx(0.5)


def test_markdown_shows_log_loss_and_accuracy_not_map(tmp_path) -> None:
    rep = {"family": "f", "sweep_id": "s", **report_scenes.build(TRIALS)}
    text = report.markdown(rep)
    assert "mAP" not in text
    assert "log loss (lower is better)" in text.lower()
    assert "| sp4asc | ce | DSC | 62,922 | 1.050 ± 0.071 | 61.0 ± 1.4 | 0.950 ± 0.071 |" in text
    assert "| 3 fl_tta | focal | 0.95 | 66.7 | 0.88 | 68.7 |" in text
    assert "Chance level: accuracy 10.0 %" in text
    csv_text = report.write_csv(rep, tmp_path / "r.csv").read_text().splitlines()
    assert csv_text[0].startswith("arch,model_arch,conv,label,")
    assert len(csv_text) == 1 + 3


def test_trials_without_tta_leave_its_columns_empty() -> None:
    rep = report_scenes.build([trial("dsc", "ce", 0, 0.5, 1.2, tta=False)])
    (row,) = rep["rows"]
    assert row["accuracy_tta_values"] == []
    text = report_scenes.markdown({"family": "f", "sweep_id": "s", **rep})
    assert "| – ± – | – ± – |" in text
