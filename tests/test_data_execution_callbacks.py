"""The execution callbacks of `read_split`'s datasets: the idle back-off sleeps at a scheduling
step only when no task is running, prompt limits end the one-task-at-a-time cold start of an
execution, and both travel in the dataset's context into Ray Data's executions."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from ray.data._internal.execution.execution_callback import ExecutionCallback
from ray.data._internal.execution.interfaces import ExecutionResources
from ray.data._internal.execution.resource_manager import ResourceManager

from audiosweep.data import execution_callbacks, prepare_demo, read_split
from audiosweep.data.execution_callbacks import IdleBackoff, PromptResourceLimits


class _Op:
    def __init__(self, active: int) -> None:
        self.active = active

    def num_active_tasks(self) -> int:
        return self.active


@pytest.mark.parametrize(("active", "sleeps"), [((0, 0), 1), ((0, 2), 0), ((3,), 0), ((), 1)])
def test_sleeps_only_when_no_task_runs(monkeypatch, active, sleeps) -> None:
    slept: list[float] = []
    monkeypatch.setattr(execution_callbacks.time, "sleep", slept.append)
    executor = SimpleNamespace(_topology={_Op(n): None for n in active})
    IdleBackoff().on_execution_step(executor)
    assert slept == [execution_callbacks.IDLE_SLEEP_S] * sleeps


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


@pytest.mark.integration
@pytest.mark.parametrize("epoch", [0, None])
def test_read_split_executions_run_the_callbacks(ray_client, tiny_dataset, epoch) -> None:
    ray_client.data.DataContext.get_current().enable_progress_bars = False
    ds = read_split(tiny_dataset, "train", batch_size=4, epoch=epoch, seed=1)
    classes = ds.context.custom_execution_callback_classes
    assert classes.count(IdleBackoff) == 1
    assert classes.count(PromptResourceLimits) == 1
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


def _manager(cpu: float, memory: float) -> SimpleNamespace:
    limits = ExecutionResources(cpu=cpu, gpu=0, object_store_memory=memory)
    return SimpleNamespace(_global_limits=limits, _global_limits_last_update_time=123.0)


@pytest.mark.parametrize(
    ("cpu", "memory", "age", "refreshed"),
    [
        (0, 0, 0.0, True),  # cold start: no answer from the coordinator yet
        (2, 1e9, 0.0, False),  # limits known
        (0, 1e9, 0.0, False),  # no CPU left to data tasks (e.g. Train holds it): a real answer
        (0, 0, 5.0, False),  # past the first second Ray's own refresh interval rules
    ],
)
def test_prompt_limits_refresh_only_a_cold_start(monkeypatch, cpu, memory, age, refreshed):
    callback = PromptResourceLimits()
    callback.before_execution_starts(None)
    monkeypatch.setattr(callback, "_started", callback._started - age)
    executor = SimpleNamespace(_resource_manager=_manager(cpu, memory))
    callback.on_execution_step(executor)
    assert (executor._resource_manager._global_limits_last_update_time == 0.0) is refreshed


def test_the_refresh_interval_is_still_rays() -> None:
    # The callback is only worth its place while Ray re-reads the limits this rarely.
    assert ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S == execution_callbacks.COLD_START_S


class _LimitsLog(ExecutionCallback):
    """Records (seconds since the execution started, CPU limit) at every scheduling step."""

    seen: list[tuple[float, float]] = []

    def before_execution_starts(self, executor) -> None:
        self._started = time.monotonic()

    def on_execution_step(self, executor) -> None:
        limits = executor._resource_manager._global_limits
        type(self).seen.append((time.monotonic() - self._started, limits.cpu))


def _slow(batch):
    time.sleep(0.25)
    return batch


@pytest.mark.integration
@pytest.mark.parametrize("prompt", [True, False])
def test_an_execution_gets_the_clusters_cpus_within_its_first_second(
    ray_client, tiny_dataset, prompt
) -> None:
    """Without the callback an execution's limits stay zero (one task at a time) for 1 s."""
    ray_client.data.DataContext.get_current().enable_progress_bars = False
    for _ in range(2):  # the first execution also starts Ray Data's coordinator actor
        ds = read_split(tiny_dataset, "train", batch_size=1, epoch=0, waveform_transform=_slow)
        classes = [*ds.context.custom_execution_callback_classes, _LimitsLog]
        if not prompt:
            classes.remove(PromptResourceLimits)
        ds.context.custom_execution_callback_classes = classes
        _LimitsLog.seen = []
        assert sum(len(b["target"]) for b in ds.iter_batches(batch_size=None)) == 8
    first_cpus = next(t for t, cpu in _LimitsLog.seen if cpu > 0)
    if prompt:  # the coordinator answers within about 0.1 s
        assert first_cpus < execution_callbacks.COLD_START_S
    else:
        assert first_cpus >= execution_callbacks.COLD_START_S


@pytest.mark.integration
def test_cold_start_benchmark_times_both_variants_alternately(ray_client, tiny_dataset) -> None:
    from audiosweep.bench.cold_start import bench_cold_start, csv_rows, format_result

    ray_client.data.DataContext.get_current().enable_progress_bars = False
    result = bench_cold_start(tiny_dataset, passes=2, warmup=0, batch_size=4)
    assert result["clips"] == 8
    assert len(result["prompt_runs"]) == len(result["ray_default_runs"]) == 2
    assert result["ratio"] == pytest.approx(
        result["prompt_clips_per_s"] / result["ray_default_clips_per_s"]
    )
    assert "PromptResourceLimits" in format_result(result)
    rows = csv_rows(result)
    assert [r["clips_per_s"] for r in rows] == [
        result["prompt_clips_per_s"],
        result["ray_default_clips_per_s"],
    ]
    assert rows[0]["ratio"] == result["ratio"] and rows[1]["ratio"] == 1.0
    assert {r["ray_cpus"] for r in rows} == {ray_client.cluster_resources()["CPU"]}
