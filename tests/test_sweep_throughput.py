"""The sweep's controlled throughput measurement: paired ratios, the figures it logs to the
parent run and reads back, and the report's columns and method statement."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from audiosweep.config import TrialConfig
from audiosweep.sweep import report, throughput
from audiosweep.train.side_by_side import paired_ratio

BASE = TrialConfig().with_overrides(
    {
        "data.clip_seconds": 2.0,
        "audio.sample_rate": 16000,
        "audio.f_max": 8000.0,
        "audio.hop_length": 125,
        "audio.n_mels": 32,
        "bench.batch": 1,
        "bench.repeats": 2,
        "bench.threads": 1,
    }
)


def test_paired_ratio_is_the_median_of_per_repeat_ratios() -> None:
    # Per repeat: 1/2, 2/2, 6/2 -> median 1.0; the ratio of medians would be 2/2 as well, so a
    # second case where they differ: 1/1, 1/4, 10/2 -> 1.0 (medians: 1/2 = 0.5).
    assert paired_ratio([1.0, 2.0, 6.0], [2.0, 2.0, 2.0]) == 1.0
    assert paired_ratio([1.0, 1.0, 10.0], [1.0, 4.0, 2.0]) == 1.0
    assert paired_ratio([2.0, 2.0], [1.0]) == 2.0  # rounds one lacks are left out
    assert math.isnan(paired_ratio([], []))


def test_input_shape_is_the_presets_clip_and_threads_the_workers() -> None:
    assert throughput.input_shape(BASE) == (1, 1, 32, 2 * 16000 // 125 + 1)
    paper = TrialConfig().with_overrides({"data.clip_seconds": 10.0})
    assert throughput.input_shape(paper) == (8, 1, 128, 1001)
    assert throughput.bench_threads(paper.with_overrides({"train.cpus_per_worker": 4})) == 4
    assert throughput.bench_threads(paper) == 1  # 0.5 CPU per worker: one thread


def test_sweep_cases_takes_one_resolved_config_per_case() -> None:
    def grid_result(case: str, seed: int, **overrides) -> SimpleNamespace:
        arch, conv = case.split("/")
        variant = {"model.arch": "convnext_atto", "model.conv": conv, **overrides}
        return SimpleNamespace(
            config={"variant": {"case": case, "seed": seed, "overrides": variant}}
        )

    results = [
        grid_result("convnext_tiny/dsc", 0),
        grid_result("convnext_tiny/dsc", 1),
        grid_result("convnext_tiny/dcls_gauss", 0),
        grid_result("convnext_tiny/dcls_gauss", 0, **{"model.kernel_count": 9}),
        SimpleNamespace(config={}),  # a trial Tune never started
    ]
    cases = throughput.sweep_cases(results, BASE)
    assert sorted(cases) == [
        ("convnext_tiny", "dcls_gauss", 23, 9),
        ("convnext_tiny", "dcls_gauss", 23, 26),
        ("convnext_tiny", "dsc", 7, 49),
    ]
    assert cases[("convnext_tiny", "dsc", 7, 49)]["model"]["arch"] == "convnext_atto"


def test_sweep_cases_reads_the_samples_of_a_seed_group_search() -> None:
    """An Optuna sample with ``sweep.seeds_per_config`` holds ``seeds``, not ``seed``."""
    case = {"model.arch": "convnext_atto", "model.conv": "dcls_gauss"}
    results = [
        SimpleNamespace(
            config={
                "cases": {"convnext_tiny:dcls_gauss": case},
                "case": "convnext_tiny:dcls_gauss",
                "params": {"model.kernel_count": count},
                "seeds": [0, 1],
            }
        )
        for count in (9, 16)
    ]
    cases = throughput.sweep_cases(results, BASE)
    assert sorted(cases) == [
        ("convnext_tiny", "dcls_gauss", 23, 9),
        ("convnext_tiny", "dcls_gauss", 23, 16),
    ]


def test_measure_times_every_case_side_by_side_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    cases = {
        ("convnext_tiny", conv, ks, kc): BASE.with_overrides(
            {"model.arch": "convnext_atto", "model.conv": conv}
        ).to_dict()
        for conv, ks, kc in (("dsc", 7, 49), ("dcls_gauss", 23, 26))
    }
    out = throughput.measure(cases, num_classes=3)
    assert torch.get_num_threads() == threads
    assert out["setup"]["input_shape"] == "1x1x32x257" and out["setup"]["threads"] == 1
    assert out["setup"]["device"] == "cpu" and out["setup"]["repeats"] == 2
    assert out["setup"]["clock"] == "thread"  # one CPU thread: its CPU time
    dsc, dcls = out["cases"][("convnext_tiny", "dsc", 7, 49)], out["cases"][cases_key(cases)]
    assert dsc["infer_x_dsc"] == dsc["train_x_dsc"] == 1.0
    for row in (dsc, dcls):
        assert set(row) == set(throughput.FIGURES)
        assert all(value > 0 for value in row.values())


def cases_key(cases: dict) -> tuple:
    return next(k for k in cases if k[1] != "dsc")


MEASUREMENT = {
    "setup": {
        "device": "cpu",
        "threads": 1,
        "input_shape": "8x1x32x129",
        "clip_seconds": "5.12",
        "dtype": "float32",
        "repeats": 7,
        "min_sample_s": 0.0,
        "clock": "thread",
        "positions": throughput.POSITIONS,
        "skipped": "",
    },
    "cases": {
        ("convnext_tiny", "dsc", 7, 49): {
            "infer_samples_per_s": 100.0,
            "train_samples_per_s": 40.0,
            "infer_x_dsc": 1.0,
            "train_x_dsc": 1.0,
        },
        ("convnext_tiny", "dcls_gauss", 23, 26): {
            "infer_samples_per_s": 80.0,
            "train_samples_per_s": 30.0,
            "infer_x_dsc": 0.9,  # paired: differs from 80 / 100 on purpose
            "train_x_dsc": 0.7,
        },
    },
}


def test_the_measurement_round_trips_through_the_parent_runs_metrics_and_tags() -> None:
    metrics, tags = throughput.to_run(MEASUREMENT)
    assert metrics["throughput/convnext_tiny/dcls_gauss/23x26/infer_x_dsc"] == 0.9
    assert tags["audiosweep.throughput.input_shape"] == "8x1x32x129"
    back = throughput.from_run({**metrics, "final_map": 0.3}, {**tags, "other": "x"})
    assert back["cases"] == MEASUREMENT["cases"]
    assert back["setup"]["threads"] == "1"
    assert throughput.from_run({"final_map": 0.3}, {}) is None


def _row(conv: str, ks: int, kc: int, maps: list[float]) -> dict:
    mean = sum(maps) / len(maps)
    return {
        "arch": "convnext_tiny",
        "model_arch": "convnext_micro",
        "conv": conv,
        "method": report.METHOD[conv],
        "kernel": f"{ks}² / {kc}",
        "kernel_size": ks,
        "kernel_count": kc,
        "params": 1000,
        "map_mean": mean,
        "map_std": 0.01,
        "seeds": len(maps),
        "maps": maps,
        "infer_samples_per_s": 5.0,  # a trial's own figure: replaced by the controlled one
        "macs_per_clip": 7_700_000.0 if conv == "dsc" else 8_400_000.0,
        "train_step_peak_bytes": 25_000_000.0,
        "x_chance": mean / 0.2,
    }


def test_report_columns_come_from_the_controlled_measurement_and_state_it() -> None:
    rows = [_row("dsc", 7, 49, [0.30, 0.32, 0.31]), _row("dcls_gauss", 23, 26, [0.35, 0.36])]
    throughput.attach(rows, MEASUREMENT)
    assert [r["infer_samples_per_s"] for r in rows] == [100.0, 80.0]
    (diff,) = report.dcls_vs_dsc(rows)
    assert diff["throughput_ratio"] == 0.9 and diff["train_throughput_ratio"] == 0.7
    rep = {
        "family": "f",
        "sweep_id": "s",
        "chance_map": 0.2,
        "rows": rows,
        "diffs": [diff],
        "paper": report.PAPER_ROWS,
        "throughput": MEASUREMENT,
    }
    text = report.markdown(rep)
    assert "| inference (samples/s) | train step (samples/s) | MMACs / clip |" in text
    assert "| 100.0 | 40.0 | 7.7 | 25 |" in text and "| 80.0 | 30.0 | 8.4 | 25 |" in text
    assert "| 0.90× | 0.70× |" in text
    assert "on the CPU, 1 thread, input 8x1x32x129 (float32; the preset's 5.12 s clips)" in text
    assert (
        "7 interleaved repeats" in text
        and "positions spread over the dilated kernel, as after training" in text
    )
    assert "the measuring thread's CPU time" in text and "back to back" not in text


def test_a_sweep_without_the_measurement_reports_no_throughput() -> None:
    rows = [_row("dsc", 7, 49, [0.3, 0.31]), _row("dcls_gauss", 23, 26, [0.35, 0.36])]
    throughput.attach(rows, None)
    assert all(math.isnan(r["infer_samples_per_s"]) for r in rows)
    (diff,) = report.dcls_vs_dsc(rows)
    assert math.isnan(diff["throughput_ratio"])
    assert "no controlled measurement" in throughput.method_text(None)


@pytest.mark.parametrize("bad", ["bench.batch=0", "bench.threads=0", "bench.dtype=int8"])
def test_bench_config_names_a_bad_value(bad: str) -> None:
    from audiosweep.config import ConfigError

    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        TrialConfig().with_overrides([bad])


def test_thread_clock_times_cpu_work_not_waiting() -> None:
    import time

    from audiosweep.train.side_by_side import Timed, time_interleaved

    class Sleeper(torch.nn.Module):
        """Waits 50 ms and computes almost nothing: wall time sees the wait, CPU time not."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(0.05)
            return x.sum(dim=1, keepdim=True).repeat(1, 3)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        entries = {c: Timed(c, Sleeper()) for c in ("wall", "thread")}
        x, target = torch.zeros(2, 4), torch.zeros(2, 3)
        for clock, entry in entries.items():
            time_interleaved(
                [entry], modes=("inference",), x=x, target=target, repeats=2, clock=clock
            )
    finally:
        torch.set_num_threads(threads)
    assert min(entries["wall"].seconds["inference"]) >= 0.05
    assert max(entries["thread"].seconds["inference"]) < 0.02
    with pytest.raises(ValueError, match="one-thread CPU"):
        time_interleaved(
            [entries["wall"]], modes=("inference",), x=x, target=target, repeats=1, clock="cpu"
        )
