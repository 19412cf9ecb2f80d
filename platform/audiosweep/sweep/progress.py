"""A compact console view of a running sweep, in place of Tune's trial tables and worker logs.

One line when a trial starts or ends and at most every `interval_s` otherwise: trials done /
running / total, elapsed and estimated time, and the latest eval mAP of each case.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback


def _case(config: dict[str, Any]) -> str:
    if "variant" in config:
        return config["variant"]["case"]
    return str(config.get("case", "trial")).replace(":", "/")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class SweepProgress(Callback):
    """Prints the sweep's progress on one line per event (see the module docstring)."""

    def __init__(self, total: int, *, interval_s: float = 60.0, out: TextIO | None = None) -> None:
        self.total = total
        self.interval_s = interval_s
        self.out = out or sys.stdout
        self.start = time.monotonic()
        self.last_print = 0.0
        self.running: set[str] = set()
        self.done = 0
        self.failed = 0
        self.latest_map: dict[str, float] = {}

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.start
        finished = self.done + self.failed
        text = (
            f"[audiosweep] trials {finished}/{self.total} done, {len(self.running)} running"
            + (f", {self.failed} failed" if self.failed else "")
            + f" | {format_duration(elapsed)} elapsed"
        )
        if 0 < finished < self.total:
            left = elapsed / finished * (self.total - finished)
            text += f", ~{format_duration(left)} left"
        if self.latest_map:
            maps = ", ".join(f"{c} {m:.3f}" for c, m in sorted(self.latest_map.items()))
            text += f" | latest mAP: {maps}"
        return text

    def _print(self) -> None:
        self.last_print = time.monotonic()
        print(self.line(self.last_print), file=self.out, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)
        self._print()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if isinstance(result.get("eval_map"), (int, float)):
            self.latest_map[_case(trial.config)] = float(result["eval_map"])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._print()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._print()

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self.last_print >= self.interval_s:
            self._print()
