"""The report's table, the DCLS − DSC comparison and the chance level, from known rows."""

from __future__ import annotations

import math

import matplotlib
import pytest
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audiosweep.sweep import report  # noqa: E402


def row(arch: str, conv: str, maps: list[float], throughput: float) -> dict:
    mean = sum(maps) / len(maps)
    std = math.sqrt(sum((m - mean) ** 2 for m in maps) / (len(maps) - 1))
    return {
        "arch": arch,
        "model_arch": arch,
        "conv": conv,
        "method": report.METHOD[conv],
        "kernel": "7² / 49" if conv == "dsc" else "23² / 26",
        "params": 1000,
        "map_mean": mean,
        "map_std": std,
        "seeds": len(maps),
        "maps": maps,
        "infer_samples_per_s": throughput,
        "x_chance": mean / 0.2,
    }


ROWS = [
    row("convnext_tiny", "dsc", [0.30, 0.32, 0.31], 10.0),
    row("convnext_tiny", "dcls_gauss", [0.35, 0.36, 0.34], 8.0),
]


def test_dcls_vs_dsc_matches_scipy_welch_and_the_throughput_ratio():
    (diff,) = report.dcls_vs_dsc(ROWS)
    assert diff["diff"] == pytest.approx(0.35 - 0.31)
    expected = stats.ttest_ind([0.35, 0.36, 0.34], [0.30, 0.32, 0.31], equal_var=False).pvalue
    assert diff["p_value"] == pytest.approx(expected)
    assert diff["throughput_ratio"] == pytest.approx(0.8)


def test_markdown_states_the_chance_level_and_each_case_against_it():
    rep = {
        "family": "f",
        "sweep_id": "s",
        "chance_map": 0.2,
        "rows": ROWS,
        "diffs": report.dcls_vs_dsc(ROWS),
        "paper": report.PAPER_ROWS,
    }
    text = report.markdown(rep)
    assert "Chance level: 20.00 mAP points" in text
    assert "| 31.00 ± 1.00 | 1.55 | 3 |" in text
    assert "| 35.00 ± 1.00 | 1.75 | 3 |" in text


def test_report_plot_starts_at_zero_and_draws_the_chance_level(tmp_path, monkeypatch):
    saved = {}
    real_close = plt.close

    def keep(fig):
        saved["fig"] = fig
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    report.report_bars(ROWS, tmp_path / "r.png", chance=0.2)
    ax = saved["fig"].axes[0]
    assert ax.get_ylim()[0] == 0.0
    assert ax.get_ylim()[1] > 0.36
    chance_lines = [line for line in ax.get_lines() if list(line.get_ydata()) == [0.2, 0.2]]
    assert len(chance_lines) == 1
    assert (tmp_path / "r.png").stat().st_size > 0


def test_dataset_line_under_the_table_and_two_reports_compared():
    trials = [{"dataset": "aaaa"}, {"dataset": "aaaa"}, {"dataset": None}]
    base = {"family": "f", "chance_map": 0.2, "rows": ROWS, "diffs": [], "paper": []}
    one = {**base, "sweep_id": "one", "datasets": report.datasets_of(trials[:2])}
    mixed = {**base, "sweep_id": "mixed", "datasets": report.datasets_of(trials)}
    other = {**base, "sweep_id": "other", "datasets": {"bbbb": 3}}
    text = report.markdown(one)
    table_end = text.index("| 35.00 ± 1.00")
    assert text.index("Dataset fingerprint: aaaa (2 trials).") > table_end
    assert "differ between trials: aaaa (2), unknown (1)" in report.markdown(mixed)
    assert "used the same dataset (aaaa)" in report.compare_datasets(one, {**one, "sweep_id": "b"})
    assert "used different datasets (aaaa vs bbbb)" in report.compare_datasets(one, other)
    assert "do not compare" in report.compare_datasets(mixed, mixed)


def test_selection_metric_reads_the_validation_split_when_there_is_one():
    from audiosweep.sweep.tuner import selection_metric

    assert selection_metric("eval_map", None) == "eval_map"
    assert selection_metric("eval_map", "val") == "val_map"
    assert selection_metric("eval_log_loss", "val") == "val_log_loss"
    assert selection_metric("train_loss", "val") == "train_loss"
