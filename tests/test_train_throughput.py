"""The training throughput timer: warm-up steps of each epoch left out, data waits included."""

from __future__ import annotations

import pytest

from audiosweep.train import throughput
from audiosweep.train.throughput import StepTimer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(throughput.time, "perf_counter", fake)
    return fake


def _epoch(timer: StepTimer, clock: Clock, step_seconds: list[float], batch: int) -> None:
    timer.begin_epoch()
    for seconds in step_seconds:
        clock.now += seconds  # data wait + compute of this step
        timer.step(batch)
    timer.end_epoch()


def test_warm_up_steps_of_every_epoch_are_left_out(clock: Clock) -> None:
    timer = StepTimer(warmup_steps=2)
    _epoch(timer, clock, [10.0, 5.0, 1.0, 1.0, 2.0], batch=8)  # counted: 3 steps, 4 s
    _epoch(timer, clock, [7.0, 3.0, 2.0], batch=8)  # counted: 1 step, 2 s
    assert timer.samples == 32
    assert timer.seconds == pytest.approx(6.0)
    assert timer.samples_per_second == pytest.approx(32 / 6)


def test_no_warm_up_counts_from_the_start_of_the_epoch(clock: Clock) -> None:
    timer = StepTimer(warmup_steps=0)
    _epoch(timer, clock, [1.0, 3.0], batch=4)
    assert (timer.samples, timer.seconds) == (8, pytest.approx(4.0))


def test_an_epoch_shorter_than_its_warm_up_counts_nothing(clock: Clock) -> None:
    timer = StepTimer(warmup_steps=3)
    _epoch(timer, clock, [1.0, 1.0], batch=4)
    assert timer.samples == 0
    assert timer.samples_per_second != timer.samples_per_second  # nan
