"""The Pareto front of the sweep report (mAP against throughput, both maximised) against a
brute-force non-dominated filter, and its table and plot from known configurations."""

from __future__ import annotations

import math
import random

import pytest

from audiosweep.sweep import report_pareto


def brute_force_front(points: list[tuple[float, float]]) -> list[int]:
    """O(n²): p stays unless some q is >= in both coordinates and > in one."""
    return [
        i
        for i, (px, py) in enumerate(points)
        if not any(
            qx >= px and qy >= py and (qx > px or qy > py)
            for j, (qx, qy) in enumerate(points)
            if j != i
        )
    ]


@pytest.mark.parametrize("seed", range(40))
def test_front_equals_the_brute_force_filter_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    # Few distinct values on a coarse grid: many equal x, equal y and identical points.
    levels = rng.randint(2, 8)
    points = [(rng.randint(0, levels) / levels, rng.randint(0, levels) / levels) for _ in range(n)]
    assert report_pareto.pareto_front(points) == brute_force_front(points)


def test_front_of_continuous_points_and_edge_cases() -> None:
    rng = random.Random(7)
    points = [(rng.random(), rng.random()) for _ in range(300)]
    assert report_pareto.pareto_front(points) == brute_force_front(points)
    assert report_pareto.pareto_front([]) == []
    assert report_pareto.pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # equal: both stay
    # A chain where each point beats the next in both: only the first.
    assert report_pareto.pareto_front([(3.0, 3.0), (2.0, 2.0), (1.0, 1.0)]) == [0]


def config(case: str, conv: str, ks: int, mean: float, std: float, ratio: float) -> dict:
    return {
        "run_id": f"r{ks}",
        "case": case,
        "conv": conv,
        "params": {
            "model.dilated_kernel_size": str(ks),
            "model.kernel_count": "26",
            "optim.position_lr_scale": repr(ks / 7),  # as MLflow keeps a float: its repr
        },
        "map_mean": mean,
        "map_std": std,
        "seeds": 2,
        "throughput_ratio": ratio,
        "samples_per_s": 10 * ratio,
        "dsc_samples_per_s": 10.0,
    }


def test_table_and_plot_show_the_front(tmp_path, monkeypatch) -> None:
    configs = [
        config("convnext_tiny/dcls_gauss", "dcls_gauss", 7, 0.30, 0.01, 0.9),
        config("convnext_tiny/dcls_gauss", "dcls_gauss", 17, 0.35, 0.02, 0.7),
        config("convnext_tiny/dcls_gauss", "dcls_gauss", 23, 0.33, 0.02, 0.6),  # dominated by 17
        config("convnext_tiny/dcls_gauss", "dcls_gauss", 31, math.nan, math.nan, 0.5),  # no mAP
    ]
    monkeypatch.setattr(report_pareto, "fetch_configs", lambda *a: [dict(c) for c in configs])
    pareto = report_pareto.build(None, "family", "sweep")
    # The values that vary (the kernel count does not), floats to 3 significant digits.
    assert pareto["keys"] == ["model.dilated_kernel_size", "optim.position_lr_scale"]
    assert [c["params"]["model.dilated_kernel_size"] for c in pareto["front"]] == ["7", "17"]
    text = "\n".join(report_pareto.markdown(pareto))
    assert "2 of 4 configurations are on the front" in text
    assert (
        "| convnext_tiny/dcls_gauss | model.dilated_kernel_size=17 optim.position_lr_scale=2.43 | "
        "35.00 ± 2.00 | 2 | 0.70×" in text
    )
    assert "model.dilated_kernel_size=23" not in text
    png = report_pareto.plot(pareto, tmp_path / "pareto.png", title="sweep")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_text = report_pareto.write_csv(pareto, tmp_path / "pareto.csv").read_text().splitlines()
    assert csv_text[0].split(",") == report_pareto.CSV_FIELDS
    assert len(csv_text) == 3


def test_no_objective_no_section(monkeypatch) -> None:
    monkeypatch.setattr(report_pareto, "fetch_configs", lambda *a: [])
    assert report_pareto.build(None, "family", "sweep") is None
