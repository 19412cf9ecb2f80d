"""The idle-executor back-off: sleeps at a scheduling step only when no task is running, and
travels in the context of every dataset `read_split` returns, into Ray Data's executions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audiosweep.data import idle_backoff, prepare_demo, read_split
from audiosweep.data.idle_backoff import IdleBackoff


class _Op:
    def __init__(self, active: int) -> None:
        self.active = active

    def num_active_tasks(self) -> int:
        return self.active


@pytest.mark.parametrize(("active", "sleeps"), [((0, 0), 1), ((0, 2), 0), ((3,), 0), ((), 1)])
def test_sleeps_only_when_no_task_runs(monkeypatch, active, sleeps) -> None:
    slept: list[float] = []
    monkeypatch.setattr(idle_backoff.time, "sleep", slept.append)
    executor = SimpleNamespace(_topology={_Op(n): None for n in active})
    IdleBackoff().on_execution_step(executor)
    assert slept == [idle_backoff.IDLE_SLEEP_S] * sleeps


class _Recorder(IdleBackoff):
    steps = 0

    def on_execution_step(self, executor) -> None:
        type(self).steps += 1
        super().on_execution_step(executor)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("idle") / "ds"
    prepare_demo(
        out, train_clips=8, eval_clips=4, clip_seconds=1.0, sample_rate=8000, progress=False
    )
    return out


@pytest.mark.parametrize("epoch", [0, None])
def test_read_split_executions_run_the_back_off(ray_client, tiny_dataset, epoch) -> None:
    ray_client.data.DataContext.get_current().enable_progress_bars = False
    ds = read_split(tiny_dataset, "train", batch_size=4, epoch=epoch, seed=1)
    classes = ds.context.custom_execution_callback_classes
    assert classes.count(IdleBackoff) == 1
    # The context's class list is the dataset's own: the process-wide default is untouched.
    assert (
        IdleBackoff
        not in ray_client.data.DataContext.get_current().custom_execution_callback_classes
    )
    # Ray instantiates the dataset's callback classes in the execution that reads it.
    ds.context.custom_execution_callback_classes = [
        _Recorder if c is IdleBackoff else c for c in classes
    ]
    _Recorder.steps = 0
    rows = sum(len(b["target"]) for b in ds.iter_batches(batch_size=None))
    assert rows == 8
    assert _Recorder.steps > 0
