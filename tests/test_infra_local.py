"""infra/local/up.sh and down.sh against a real Ray head and MLflow server on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SERVICE_PORT_VARIABLES, free_port_env, free_ports, parse_exports

REPO = Path(__file__).resolve().parents[1]
UP = REPO / "infra" / "local" / "up.sh"
DOWN = REPO / "infra" / "local" / "down.sh"
VENV_BIN = Path(sys.executable).parent


def _proc_state(pid: int) -> str | None:
    """Process state letter from /proc (None if the pid does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _running(pid: int) -> bool:
    # Orphans may stay zombies here (pid 1 does not always reap): a zombie has stopped.
    return _proc_state(pid) not in (None, "Z", "X")


def _service_pids(leader: int) -> set[int]:
    """The leader's process group plus all its descendants."""
    parent, group = {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid, pgid = int(entry.name), int(fields[1]), int(fields[2])
        parent[pid] = ppid
        if pgid == leader:
            group.add(pid)
    tree = set()
    for pid in parent:
        p, hops = pid, 0
        while p in parent and p != leader and hops < 1000:
            p, hops = parent[p], hops + 1
        if p == leader:
            tree.add(pid)
    return {p for p in group | tree if _running(p)}


def _listen_addresses(port: int) -> list[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                addr_hex, port_hex = local.rsplit(":", 1)
                if state != "0A" or int(port_hex, 16) != port:
                    continue
                raw = bytes.fromhex(addr_hex)
                # /proc stores each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
                found.append(socket.inet_ntop(family, words))
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_up_is_healthy_loopback_idempotent_and_down_stops_it(
    ray_environment: Path, tmp_path: Path
) -> None:
    state = tmp_path / "infra-state"
    ports = dict(zip(SERVICE_PORT_VARIABLES, free_ports(4), strict=True))
    unset = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update({k: str(v) for k, v in ports.items()}, AUDIOSWEEP_STATE=str(state))
    dash, mlflow_port, gcs = (
        ports["AUDIOSWEEP_DASHBOARD_PORT"],
        ports["AUDIOSWEEP_MLFLOW_PORT"],
        ports["AUDIOSWEEP_RAY_PORT"],
    )
    try:
        t0 = time.monotonic()
        up = _run(["bash", str(UP)], env, timeout=240)
        up_seconds = time.monotonic() - t0
        assert up.returncode == 0, f"up.sh failed:\n{up.stderr}"
        exports = parse_exports(up.stdout)

        # The exports name the loopback services and reuse the session's token.
        assert exports["RAY_ADDRESS"] == f"http://127.0.0.1:{dash}"
        assert exports["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{mlflow_port}"
        assert exports["RAY_AUTH_MODE"] == "token"
        assert exports["RAY_AUTH_TOKEN"] == os.environ["RAY_AUTH_TOKEN"]
        assert (state / "mlflow_uri").read_text().strip() == exports["MLFLOW_TRACKING_URI"]
        assert parse_exports((state / "env.sh").read_text()) == exports
        assert (state / "ray_auth_token").stat().st_mode & 0o077 == 0

        client_env = {**env, **exports}
        status = _run(
            [str(VENV_BIN / "ray"), "status", f"--address={exports['AUDIOSWEEP_RAY_GCS_ADDRESS']}"],
            client_env,
            timeout=120,
        )
        assert status.returncode == 0, status.stderr
        assert "CPU" in status.stdout

        with urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health", timeout=10) as r:
            assert r.status == 200 and r.read().decode().strip() == "OK"

        # Dashboard/job server, MLflow and the GCS accept connections on loopback only.
        for port in (dash, mlflow_port, gcs):
            addresses = _listen_addresses(port)
            assert addresses, f"nothing listens on port {port}"
            assert set(addresses) <= {"127.0.0.1", "::ffff:127.0.0.1"}, (port, addresses)

        # A client with only the exported env can submit a job; it runs the project's python,
        # with MLflow's telemetry off.
        job = _run(
            [str(VENV_BIN / "ray"), "job", "submit", "--", "python", "-c",
             "import os, sys; print('job-python', sys.executable);"
             "print('job-telemetry-off', os.environ.get('MLFLOW_DISABLE_TELEMETRY'))"],
            client_env,
            timeout=180,
        )  # fmt: skip
        assert job.returncode == 0, job.stdout + job.stderr
        assert f"job-python {VENV_BIN / 'python'}" in job.stdout
        assert "job-telemetry-off true" in job.stdout

        # Artifacts go through the server into the state folder.
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
        run = client.create_run(client.create_experiment("infra-test"))
        artifact = tmp_path / "note.txt"
        artifact.write_text("stored by the server")
        client.log_artifact(run.info.run_id, str(artifact))
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        stored = list((state / "mlartifacts").rglob("note.txt"))
        assert [p.read_text() for p in stored] == ["stored by the server"]

        ray_leader = int((state / "run" / "ray.pid").read_text())
        mlflow_leader = int((state / "run" / "mlflow.pid").read_text())
        server_env = Path(f"/proc/{mlflow_leader}/environ").read_bytes().split(b"\0")
        assert b"MLFLOW_DISABLE_TELEMETRY=true" in server_env

        again = _run(["bash", str(UP)], env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert parse_exports(again.stdout) == exports
        assert "already running" in again.stderr
        assert int((state / "run" / "ray.pid").read_text()) == ray_leader
        assert int((state / "run" / "mlflow.pid").read_text()) == mlflow_leader

        started = _service_pids(ray_leader) | _service_pids(mlflow_leader)
        assert ray_leader in started and mlflow_leader in started
    finally:
        t0 = time.monotonic()
        down = _run(["bash", str(DOWN)], env, timeout=120)
        down_seconds = time.monotonic() - t0
    print(f"up.sh {up_seconds:.1f} s, down.sh {down_seconds:.1f} s")

    assert down.returncode == 0, down.stderr
    assert not {p for p in started if _running(p)}, "processes survived down.sh"
    for port in (dash, mlflow_port, gcs):
        assert not _port_open(port), f"port {port} still open after down.sh"
    assert (state / "mlflow.db").stat().st_size > 0
    assert stored[0].exists()
    assert not (state / "mlflow_uri").exists()

    # A second down.sh finds nothing to stop and says so.
    down_again = _run(["bash", str(DOWN)], env, timeout=60)
    assert down_again.returncode == 0
    assert "not running" in down_again.stderr


@pytest.mark.parametrize(
    ("variable", "reason"),
    [("AUDIOSWEEP_RAY_PORT", "already in use"), ("AUDIOSWEEP_MLFLOW_PORT", "already in use")],
)
def test_up_refuses_a_busy_port_before_starting_anything(
    tmp_path: Path, variable: str, reason: str
) -> None:
    state = tmp_path / "infra-state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOSWEEP_")}
    env["AUDIOSWEEP_STATE"] = str(state)
    env.update(free_port_env(SERVICE_PORT_VARIABLES))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env[variable] = str(busy.getsockname()[1])
        result = _run(["bash", str(UP)], env, timeout=60)
    assert result.returncode != 0
    assert reason in result.stderr and variable in result.stderr
    assert not (state / "run" / "ray.pid").exists()
    assert not (state / "run" / "mlflow.pid").exists()


def test_up_refuses_ray_ports_in_the_worker_port_range(tmp_path: Path) -> None:
    ray_port, client_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOSWEEP_")}
    env.update(
        AUDIOSWEEP_STATE=str(tmp_path / "s"),
        AUDIOSWEEP_RAY_PORT=str(ray_port),
        AUDIOSWEEP_RAY_CLIENT_PORT=str(client_port),
        AUDIOSWEEP_DASHBOARD_PORT="12345",
    )
    result = _run(["bash", str(UP)], env, timeout=60)
    assert result.returncode != 0
    assert "10002-19999" in result.stderr and "AUDIOSWEEP_DASHBOARD_PORT" in result.stderr


def test_cluster_yaml_passes_ray_launcher_validation() -> None:
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "infra" / "cluster.yaml").read_text())
    full = prepare_config(config)
    validate_config(full)  # Ray's JSON schema plus its node-type checks

    gpu_types = [t for t in full["available_node_types"].values() if "g5" in str(t["node_config"])]
    assert gpu_types and all(t["min_workers"] == 0 for t in gpu_types)
    assert full["file_mounts"]["~/audiosweep"] == "."
    assert any("-e ~/audiosweep" in c for c in full["setup_commands"])
    head_start = " ".join(full["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(full["worker_start_ray_commands"])


def test_rayjob_manifest_runs_the_paper_grid_on_gpu_workers() -> None:
    import yaml

    docs = list(yaml.safe_load_all((REPO / "infra" / "kuberay" / "rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    assert "jobs/grid.py --preset paper --run-root /mnt/shared" in job["spec"]["entrypoint"]
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    for container in (head, worker):
        uri = next(e for e in container["env"] if e["name"] == "MLFLOW_TRACKING_URI")
        assert uri["valueFrom"]["configMapKeyRef"]["name"] == "audiosweep-config"
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config_map["data"]["mlflow_tracking_uri"].startswith("https://")
