"""Shared fixtures: a real Ray head and MLflow server on 127.0.0.1, started once per test
session by infra/local/up.sh and stopped by infra/local/down.sh, which stop exactly those
processes (never `ray stop`, which kills every Ray process on the host).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
# Torch and Ray workers take one thread each unless told otherwise: on 2 cores, more threads
# per process only contend.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The settings this process needs as a Ray client, made here rather than in
# `ray_environment`: Ray reads them once, when first imported, and test modules import ray
# while they are collected. They start nothing. Single-node mode keeps the node IP, and so
# every Ray port, on 127.0.0.1 (otherwise `--node-ip-address=127.0.0.1` is rewritten to the
# routable address; see infra/local/common.sh); the token is the test run's own.
os.environ.update(
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    RAY_AUTH_MODE="token",
    RAY_AUTH_TOKEN=secrets.token_hex(16),
)

# The fixtures that start or reach Ray or MLflow; a test using any of them is an integration
# test (the guard below fails one that is not marked so).
SERVICE_FIXTURES = frozenset(
    {
        "ray_environment",
        "local_services",
        "ray_head",
        "ray_address",
        "ray_client",
        "mlflow_server",
        "sim_cluster",
    }
)


@pytest.fixture(scope="session")
def ray_environment():
    """One HOME and Ray temp dir for the test run (with the auth token set at import), set for
    this process and every process it starts: the Ray CLI, `ray job submit`, drivers and
    workers read them from the environment and must agree. Set here, when the first test
    that needs Ray starts, so the fast half runs in the caller's environment."""
    root = Path(tempfile.mkdtemp(prefix="as-test-"))
    (root / "home").mkdir()
    (root / "ray").mkdir()
    os.environ.update(
        HOME=str(root / "home"),
        RAY_TMPDIR=str(root / "ray"),
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    try:
        yield root
    finally:
        _kill_strays(str(root))
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist's `--dist loadgroup` (make test), every integration test runs in one
    worker, in file order: one Ray head and MLflow server serve them all, and the unit tests
    run beside them in the other."""
    for item in items:
        if item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.xdist_group("services"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture starts a service: a test without the `integration` marker may not
    use one."""
    if item.get_closest_marker("integration") is None:
        used = sorted(SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())))
        if used:
            pytest.fail(
                f"{item.nodeid} uses {', '.join(used)} (Ray/MLflow) but is not marked "
                "@pytest.mark.integration",
                pytrace=False,
            )


@pytest.fixture(autouse=True)
def _services_need_the_integration_marker(request, monkeypatch, tmp_path_factory):
    """Keeps the fast half honest: a test without the `integration` marker may not start Ray
    (in this process or a child: Ray's temp folder is pointed at an empty folder that must stay
    empty) or talk to an MLflow tracking server; see also pytest_runtest_setup."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    guard = tmp_path_factory.mktemp("no-ray")
    monkeypatch.setenv("RAY_TMPDIR", str(guard))
    # An unknown scheme: any MLflow call fails at once, naming it, instead of writing a local
    # mlflow.db or retrying a server for minutes.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unmarked-test-has-no-mlflow://")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if "ray" in sys.modules:
        import ray

        def refuse(*args, **kwargs):
            raise RuntimeError(
                f"{request.node.nodeid} starts Ray but is not marked @pytest.mark.integration"
            )

        monkeypatch.setattr(ray, "init", refuse)
    yield
    started = list(guard.iterdir())
    if started:
        pytest.fail(
            f"{request.node.nodeid} started Ray ({started[0]}) but is not marked "
            "@pytest.mark.integration",
            pytrace=False,
        )


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: all sockets stay bound until every port is picked (ports picked
    one at a time may repeat, and two services then collide on one)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port_env(names: tuple[str, ...]) -> dict[str, str]:
    """Each of `names` (port variables of infra/local/up.sh or infra/sim/up.sh) set to its own
    free port."""
    return {name: str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}


# The actors Ray Train starts for a run; a one-worker trial run in process starts none.
RAY_TRAIN_ACTORS = ("TrainController", "RayTrainWorker", "DatasetManager", "_QueueActor")


def count_actors(address: str, class_name: str) -> int:
    """Actors of `class_name` the cluster at `address` has started, alive or dead (state API)."""
    from ray.util.state import list_actors

    return len(
        list_actors(address=address, filters=[("class_name", "=", class_name)], limit=10_000)
    )


REPO = Path(__file__).resolve().parents[1]
# The ports every service set binds: GCS, Ray client, dashboard, MLflow.
SERVICE_PORT_VARIABLES = (
    "AUDIOSWEEP_RAY_PORT",
    "AUDIOSWEEP_RAY_CLIENT_PORT",
    "AUDIOSWEEP_DASHBOARD_PORT",
    "AUDIOSWEEP_MLFLOW_PORT",
)
_PORT_VARIABLES = (
    *SERVICE_PORT_VARIABLES,
    "AUDIOSWEEP_RAY_AGENT_GRPC_PORT",
    "AUDIOSWEEP_RAY_RUNTIME_ENV_PORT",
    "AUDIOSWEEP_RAY_METRICS_PORT",
)


def parse_exports(text: str) -> dict[str, str]:
    """The `export NAME=value` lines that infra/local/up.sh and infra/sim/up.sh print."""
    return dict(
        line[len("export ") :].split("=", 1)
        for line in text.splitlines()
        if line.startswith("export ")
    )


@pytest.fixture(scope="session")
def local_services(ray_environment: Path) -> dict[str, str]:
    """The Ray head (2 CPUs, dashboard/job server) and MLflow server of this test session,
    started by infra/local/up.sh, the launcher users run, on free ports with the session's
    folder as its state (so Ray's temp dir is RAY_TMPDIR); stopped by infra/local/down.sh."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        AUDIOSWEEP_STATE=str(ray_environment),
        # The test run's state is thrown away: no need to wait 20 s for a graceful stop.
        AUDIOSWEEP_STOP_GRACE="5",
        AUDIOSWEEP_VENV_BIN=str(VENV_BIN),
        AUDIOSWEEP_NUM_CPUS="2",
        AUDIOSWEEP_NUM_GPUS="0",
        # Free ports instead of Ray's fixed defaults, which another Ray instance on the host
        # (e.g. `make up`) may hold: a dashboard agent that cannot bind refuses job submission.
        **free_port_env(_PORT_VARIABLES),
    )
    assert Path(os.environ["RAY_TMPDIR"]) == ray_environment / "ray"
    try:
        up = subprocess.run(
            ["bash", str(REPO / "infra" / "local" / "up.sh"), "--exports-only"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert up.returncode == 0, up.stderr[-4000:]
        yield parse_exports(up.stdout)
    finally:
        subprocess.run(
            ["bash", str(REPO / "infra" / "local" / "down.sh")],
            env=env,
            capture_output=True,
            timeout=180,
        )


@pytest.fixture(scope="session")
def ray_head(local_services: dict[str, str]) -> dict:
    """The session's Ray head: GCS address and dashboard (job server) URL."""
    return {
        "address": local_services["AUDIOSWEEP_RAY_GCS_ADDRESS"],
        "dashboard": local_services["RAY_ADDRESS"],
    }


def _kill_strays(marker: str) -> None:
    """Kill leftover processes of this test session (e.g. a gcs_server that left the head's
    process group): those whose command line names this session's private temp folder."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture(scope="session")
def ray_address(ray_head: dict) -> str:
    """Address of the session's Ray head, for `ray.init(address=...)`."""
    return ray_head["address"]


@pytest.fixture
def ray_client(ray_address: str):
    """A driver connected to the session's head; test modules are importable by workers."""
    import ray

    # Keep the caller's PYTHONPATH after the tests folder: a worktree run with
    # PYTHONPATH=<worktree>/platform must import that tree's package in workers too.
    paths = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    ray.init(address=ray_address, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}})
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def smoke_dataset(tmp_path_factory) -> Path:
    """A tiny demo dataset (2 s clips): 48 train clips, 23 eval clips (odd on purpose)."""
    from audiosweep.data import prepare_demo

    out = tmp_path_factory.mktemp("datasets") / "smoke"
    prepare_demo(out, train_clips=48, eval_clips=23, clip_seconds=2.0, seed=0)
    return out


def run_cli(
    args: list[str], *, env: dict | None = None, timeout: float = 900, cwd: Path | None = None
):
    """Run the `audiosweep` console script; fail the test with its output if it fails."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [str(VENV_BIN / "audiosweep"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or Path(__file__).resolve().parents[1],
    )
    return proc


def submit_job(
    dashboard: str,
    entrypoint: list[str],
    *,
    env_vars: dict[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir <repo> -- python <entrypoint>` to the head at `dashboard`,
    as a user submits a job (the repository uploaded, the job's output returned)."""
    runtime_env = ["--runtime-env-json", json.dumps({"env_vars": env_vars})] if env_vars else []
    cmd = [
        str(VENV_BIN / "ray"),
        "job",
        "submit",
        "--address",
        dashboard,
        "--working-dir",
        str(REPO),
        *runtime_env,
        "--",
        "python",
        *entrypoint,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def mlflow_server(local_services: dict[str, str]) -> str:
    """The session's MLflow tracking server (SQLite backend, artifacts served over HTTP)."""
    return local_services["MLFLOW_TRACKING_URI"]


# The shared small trained run: the smoke preset's two Ray Train workers, a weight EMA.
TRAINED_EPOCHS = 3


def smoke_train_args(dataset: Path, run_root: Path, name: str, address: str) -> list[str]:
    """`audiosweep train` arguments of the shared trained run (also used to rerun it)."""
    return [
        "train",
        "--preset",
        "smoke",
        f"data.path={dataset}",
        f"train.epochs={TRAINED_EPOCHS}",
        "train.ema_decay=0.9",
        "--name",
        name,
        "--run-root",
        str(run_root),
        "--address",
        address,
    ]


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    stdout: str
    run: object  # its MLflow run
    client: object  # an MlflowClient of the session's server


@pytest.fixture(scope="session")
def trained_run(ray_address, mlflow_server, smoke_dataset, tmp_path_factory) -> TrainedRun:
    """One small trained run, tracked in the session's MLflow server, shared by every test that
    only reads its results (its folder, checkpoint, logged model and metrics)."""
    run_root = tmp_path_factory.mktemp("trained")
    args = smoke_train_args(smoke_dataset, run_root, "smoke", ray_address)
    proc = run_cli([*args, "--tracking-uri", mlflow_server])
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("audiosweep-train")
    (run,) = client.search_runs([exp.experiment_id], "attributes.run_name = 'smoke'")
    return TrainedRun(run_root / "smoke", proc.stdout, run, client)
