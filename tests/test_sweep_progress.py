"""The sweep's one-line progress view."""

from __future__ import annotations

import io
from types import SimpleNamespace

from audiosweep.sweep.progress import SweepProgress, format_duration


def trial(trial_id: str, case: str, seed: int = 0):
    return SimpleNamespace(trial_id=trial_id, config={"variant": {"case": case, "seed": seed}})


def test_format_duration():
    assert format_duration(59.6) == "1m00s"
    assert format_duration(125) == "2m05s"
    assert format_duration(3 * 3600 + 61) == "3h01m"


def test_progress_counts_estimates_and_latest_map_per_case():
    out = io.StringIO()
    progress = SweepProgress(4, out=out)
    a, b, c = (
        trial("a", "convnext_atto/dsc"),
        trial("b", "convnext_atto/dcls_gauss"),
        trial("c", "x/dsc"),
    )
    progress.on_trial_start(0, [], a)
    progress.on_trial_start(0, [], b)
    progress.on_trial_result(0, [], a, {"eval_map": 0.25})
    progress.on_trial_result(0, [], b, {"eval_map": 0.3})
    progress.on_trial_result(0, [], a, {"eval_map": 0.27, "epoch": 2})
    progress.on_trial_complete(0, [], a)
    progress.on_trial_start(0, [], c)
    progress.on_trial_error(0, [], c)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # one per start / end
    assert lines[0].startswith("[audiosweep] trials 0/4 done, 1 running |")
    assert lines[2].startswith("[audiosweep] trials 1/4 done, 1 running |")
    assert "latest mAP: convnext_atto/dcls_gauss 0.300, convnext_atto/dsc 0.270" in lines[2]
    assert "2/4 done, 1 running, 1 failed" in lines[4]
    # 2 of 4 finished after t seconds: about t more to go.
    progress.start = 0.0
    assert progress.line(now=100.0).split(" | ")[1] == "1m40s elapsed, ~1m40s left"


def test_progress_prints_between_events_only_after_the_interval():
    out = io.StringIO()
    progress = SweepProgress(2, interval_s=3600, out=out)
    progress.on_trial_start(0, [], trial("a", "c/dsc"))
    progress.on_step_end(0, [])
    assert len(out.getvalue().splitlines()) == 1
    progress.interval_s = 0
    progress.on_step_end(0, [])
    assert len(out.getvalue().splitlines()) == 2


def test_tune_slow_step_warnings_only_for_very_slow_steps_unless_the_user_set_them(monkeypatch):
    from ray.tune.utils.util import warn_if_slow

    from audiosweep.sweep import tuner

    monkeypatch.setattr(warn_if_slow, "DEFAULT_THRESHOLD", 0.5)
    monkeypatch.delenv("TUNE_WARN_THRESHOLD_S", raising=False)
    tuner._quiet_slow_step_warnings()
    assert warn_if_slow("process_trial_result").threshold == tuner.SLOW_STEP_WARN_S == 10.0

    monkeypatch.setattr(warn_if_slow, "DEFAULT_THRESHOLD", 0.5)
    monkeypatch.setenv("TUNE_WARN_THRESHOLD_S", "0.5")
    tuner._quiet_slow_step_warnings()
    assert warn_if_slow("process_trial_result").threshold == 0.5
