"""The private Ray names that audiosweep/ray_compat.py relies on still exist with the shape it
uses (one test per shim, so a Ray upgrade fails here, naming the shim), and no other library
module reaches into Ray's internals."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import ray

import audiosweep
from audiosweep import ray_compat

PACKAGE = Path(audiosweep.__file__).parent


def _source(obj) -> str:
    return inspect.getsource(obj)


def _call_keywords(source: str, method: str) -> set[str]:
    """Keyword names of the first call of `self.<method>(...)` in `source`."""
    for node in ast.walk(ast.parse(inspect.cleandoc("\n" + source))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
        ):
            return {k.arg for k in node.keywords}
    raise AssertionError(f"no call of {method} in the source")


def test_the_pinned_ray_is_the_version_the_module_was_written_for() -> None:
    assert ray.__version__ == ray_compat.WRITTEN_FOR


def test_fit_with_failure_policy_is_rays_fit_with_only_the_policy_swapped() -> None:
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    ours = _call_keywords(
        _source(ray_compat.fit_with_failure_policy), "_initialize_and_run_controller"
    )
    rays = _call_keywords(_source(DataParallelTrainer.fit), "_initialize_and_run_controller")
    assert ours == rays
    assert "failure_policy=create_failure_policy(self.run_config.failure_config)" in (
        " ".join(_source(DataParallelTrainer.fit).split())
    )
    for name in ("_get_train_func", "_create_default_callbacks", "_initialize_and_run_controller"):
        assert callable(getattr(DataParallelTrainer, name)), name


def test_predicate_failure_policy_overrides_methods_rays_policy_has() -> None:
    from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy

    for name in ("_is_retryable_error", "make_decision"):
        params = list(inspect.signature(getattr(DefaultFailurePolicy, name)).parameters)
        assert params == ["self", "training_failed_error"], name
    assert "failure_config" in inspect.signature(DefaultFailurePolicy.__init__).parameters


def test_user_exception_unwraps_rays_traceback_carrier() -> None:
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    error = ValueError("bad")
    assert ray_compat.user_exception(UserExceptionWithTraceback(error, "tb")) is error
    assert ray_compat.user_exception(error) is error


def test_ray_retries_controller_error_knows_the_startup_timeout() -> None:
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    assert ray_compat.ray_retries_controller_error(WorkerGroupStartupTimeoutError(num_workers=2))
    assert not ray_compat.ray_retries_controller_error(RuntimeError("other"))


def test_ray_init_takes_the_loopback_node_options() -> None:
    # `ray.init` takes its underscored options through **kwargs and pops them by name. (Read
    # from its defining module: conftest's guard replaces `ray.init` in unit tests.)
    from ray._private import worker

    init = inspect.unwrap(worker.init)
    source = _source(init)
    for name in ray_compat.loopback_node_options():
        assert f'kwargs.pop("{name}"' in source, name


def test_driver_logs_dir_reads_the_global_node() -> None:
    from ray._private import worker
    from ray._private.node import Node

    assert hasattr(worker, "_global_node")
    assert callable(Node.get_logs_dir_path)
    if worker._global_node is None:
        assert ray_compat.driver_logs_dir() is None


def test_gcs_cluster_config_is_read_from_the_global_state() -> None:
    from ray._private.state import state

    assert callable(state.get_cluster_config)


def test_execution_callback_hooks_and_executor_fields_exist() -> None:
    from ray.data._internal.execution.resource_manager import ResourceManager
    from ray.data._internal.execution.streaming_executor import StreamingExecutor

    base = ray_compat.execution_callback_base()
    for hook in ("before_execution_starts", "on_execution_step"):
        assert list(inspect.signature(getattr(base, hook)).parameters) == ["self", "executor"]
    executor = _source(StreamingExecutor)
    assert "self._topology" in executor and "self._resource_manager" in executor
    manager = _source(ResourceManager)
    assert "self._global_limits_last_update_time" in manager
    assert "self._global_limits" in manager


def test_data_helper_actors_are_importable() -> None:
    from ray.data._internal import stats
    from ray.data._internal.cluster_autoscaler import default_autoscaling_coordinator

    assert callable(default_autoscaling_coordinator.get_or_create_autoscaling_coordinator)
    assert callable(stats.get_or_create_stats_actor)


# Ray's private modules, and private attributes of Ray objects that ray_compat uses.
_PRIVATE = re.compile(
    r"ray\.[\w.]*\b_(private|internal)\b|ray\._raylet|\._(get_train_func|base_exc|topology|"
    r"resource_manager|global_limits\w*|global_node|initialize_and_run_controller|"
    r"create_default_callbacks)\b|\b_node_ip_address\b"
)


def private_ray_uses(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "ray_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _PRIVATE.search(line.split("#", 1)[0]):
                found.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    return found


def test_the_private_name_finder_sees_each_form(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "from ray.train.v2._internal.util import X\n"
        "node = ray._private.worker._global_node\n"
        "fn = trainer._get_train_func()\n"
        "ray.init(_node_ip_address='127.0.0.1')\n"
        "ok = ray.train.report  # ray._private in a comment is fine\n"
    )
    (pkg / "ray_compat.py").write_text("from ray._private import state\n")
    assert [f.split(":")[1] for f in private_ray_uses(pkg)] == ["1", "2", "3", "4"]


def test_no_library_module_but_ray_compat_uses_rays_private_api() -> None:
    assert private_ray_uses(PACKAGE) == []
