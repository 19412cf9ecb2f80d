"""Shared fixtures: a real Ray head on 127.0.0.1, started once per test session.

The head runs as `ray start --head --block` in its own process group so that teardown can stop
exactly this cluster (never `ray stop`, which kills every Ray process on the host).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
# One HOME, Ray temp dir and auth token per test run: the Ray CLI, `ray job submit`, drivers
# and workers all read them from the environment and must agree.
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="as-test-"))
os.environ["HOME"] = str(_SESSION_ROOT / "home")
os.environ["RAY_TMPDIR"] = str(_SESSION_ROOT / "ray")
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Ray's single-node mode keeps the node IP, and so every Ray port, on 127.0.0.1 (otherwise
# `--node-ip-address=127.0.0.1` is rewritten to the routable address); see infra/local/common.sh.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
(_SESSION_ROOT / "home").mkdir(parents=True, exist_ok=True)
(_SESSION_ROOT / "ray").mkdir(parents=True, exist_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_head(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited early ({proc.returncode}):\n{log.read_text()}")
        status = subprocess.run(
            [str(VENV_BIN / "ray"), "status", f"--address=127.0.0.1:{port}"],
            capture_output=True,
            text=True,
        )
        if status.returncode == 0 and "CPU" in status.stdout:
            return
        time.sleep(1.0)
    raise TimeoutError(f"Ray head on port {port} not up after {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def ray_head() -> dict:
    """Start a 2-CPU Ray head with dashboard/job server on loopback; yield its addresses."""
    port, dash_port = free_port(), free_port()
    log = _SESSION_ROOT / "ray-head.log"
    cmd = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        # Free ports instead of Ray's fixed defaults, which another Ray instance on the host
        # (e.g. `make up`) may hold: a dashboard agent that cannot bind refuses job submission.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={os.environ['RAY_TMPDIR']}",
        "--disable-usage-stats",
    ]
    # As infra/local/up.sh: idle workers kept for Ray Data tasks, no preemption watcher on a
    # single local node (both only save CPU; processes inherit the head's environment).
    env = {
        **os.environ,
        "RAY_num_workers_soft_limit": "32",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        _wait_for_head(port, proc, log)
        yield {
            "address": f"127.0.0.1:{port}",
            "dashboard": f"http://127.0.0.1:{dash_port}",
            "pid": proc.pid,
        }
    finally:
        _stop_process_group(proc)
        _kill_strays(str(_SESSION_ROOT))


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


def _stop_process_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def pytest_sessionfinish(session, exitstatus):
    import shutil

    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


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


@pytest.fixture(scope="session")
def mlflow_server() -> str:
    """A real MLflow tracking server on 127.0.0.1 (SQLite backend, artifacts served over HTTP)."""
    import urllib.request

    port = free_port()
    state = _SESSION_ROOT / "mlflow"
    state.mkdir(exist_ok=True)
    log = state / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        f"--backend-store-uri=sqlite:///{state / 'mlflow.db'}",
        "--serve-artifacts",
        f"--artifacts-destination={state / 'artifacts'}",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited early:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not healthy after 120 s:\n{log.read_text()}")
            time.sleep(1.0)
        yield uri
    finally:
        _stop_process_group(proc)
