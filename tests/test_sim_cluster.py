"""The cluster path on a simulated autoscaling cluster (infra/sim/): a head with no CPU and one
2-CPU worker type scaling 0..2, as Ray's fake multi-node provider runs it on this machine.

The smoke grid is submitted with `ray job submit --working-dir .`; the test checks that worker
nodes came up from zero, that trials ran on two nodes, that every child run finished with its
metrics, and prints submit → first trial, scale-up and scale-down times.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import VENV_BIN, free_port, parse_exports
from test_sweep_integration import _client, _runs

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
SIM = REPO / "infra" / "sim"


@pytest.fixture(scope="module")
def sim_cluster(tmp_path_factory) -> dict[str, str]:
    """infra/sim/up.sh on free ports and a private state folder; infra/sim/down.sh after this
    module's tests (an idle simulated cluster would slow every test after it on 2 cores)."""
    state = tmp_path_factory.mktemp("sim") / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        AUDIOSWEEP_STATE=str(state),
        AUDIOSWEEP_VENV_BIN=str(VENV_BIN),
        AUDIOSWEEP_RAY_PORT=str(free_port()),
        AUDIOSWEEP_RAY_CLIENT_PORT=str(free_port()),
        AUDIOSWEEP_DASHBOARD_PORT=str(free_port()),
        AUDIOSWEEP_MLFLOW_PORT=str(free_port()),
    )
    try:
        up = subprocess.run(
            ["bash", str(SIM / "up.sh")], env=env, capture_output=True, text=True, timeout=300
        )
        assert up.returncode == 0, up.stderr[-4000:]
        yield {**env, **parse_exports(up.stdout)}
    finally:
        down = subprocess.run(
            ["bash", str(SIM / "down.sh")], env=env, capture_output=True, text=True, timeout=180
        )
        assert down.returncode == 0, down.stderr[-3000:]


def _nodes(dashboard: str):
    from ray.util.state import list_nodes

    return list_nodes(address=dashboard, detail=True, raise_on_missing_output=False)


def _worker_nodes(dashboard: str):
    return [n for n in _nodes(dashboard) if not n.is_head_node]


@pytest.mark.timeout(2400)
def test_smoke_grid_scales_a_simulated_cluster_up_from_zero_and_down_again(
    sim_cluster, smoke_dataset, tmp_path
):
    dashboard = sim_cluster["RAY_ADDRESS"]
    assert _worker_nodes(dashboard) == [], "the simulated cluster must start without workers"
    space = tmp_path / "sim-grid.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "family": "sim-grid",
                "kind": "grid",
                "archs": ["convnext_tiny", "fastvit_sa24"],
                "convs": ["dsc"],
                "seeds": [0, 1],
            }
        )
    )
    submission = f"sim-grid-{secrets.token_hex(4)}"
    started = time.time()
    # Two workers x 0.6 CPU are a placement group two trials cannot share on a 2-CPU node,
    # and with 0.5 CPU for data the sweep plans one trial per node: two at once, on two nodes
    # that the autoscaler must start (data_cpus alone is a plan, not a reservation).
    proc = subprocess.run(
        [
            str(VENV_BIN / "ray"), "job", "submit", "--submission-id", submission,
            "--working-dir", str(REPO), "--",
            "python", "jobs/grid.py", "--space", str(space), "--preset", "smoke",
            f"data.path={smoke_dataset}", "train.epochs=1", "train.cpus_per_worker=0.6",
            "--run-root", str(tmp_path / "runs"), "--name", "sim-grid",
        ],
        capture_output=True, text=True, timeout=2000, cwd=REPO, env=sim_cluster,
    )  # fmt: skip
    finished = time.time()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "succeeded" in out
    assert "cluster capacity from autoscaling config" in out and "up to 2 at once" in out, out[
        -6000:
    ]

    client = _client(sim_cluster["MLFLOW_TRACKING_URI"])
    trials = _runs(client, "sim-grid", "sim-grid", "trial")
    assert len(trials) == 4
    for run in trials:
        assert run.info.status == "FINISHED", run.data.tags["audiosweep.trial_key"]
        assert {"eval_map", "final_map", "train_samples_per_s"} <= set(run.data.metrics)
        assert run.data.params["train.gpus_per_worker"] == "0.0"  # decided on the driver
    trial_nodes = {run.data.tags["audiosweep.node_id"] for run in trials}
    workers = _worker_nodes(dashboard)
    worker_ids = {n.node_id for n in workers}
    assert len(trial_nodes) >= 2 and trial_nodes <= worker_ids, (trial_nodes, worker_ids)

    # Scale-down: the idle timeout (15 s in infra/sim/cluster.yaml) ends every worker node.
    deadline = time.monotonic() + 300
    while any(n.state == "ALIVE" for n in _worker_nodes(dashboard)):
        assert time.monotonic() < deadline, "worker nodes still alive 300 s after the sweep"
        time.sleep(3)
    workers = _worker_nodes(dashboard)
    first_up = min(n.start_time_ms for n in workers) / 1000
    last_down = max(n.end_time_ms for n in workers) / 1000
    first_trial = min(run.info.start_time for run in trials) / 1000
    from ray.job_submission import JobSubmissionClient

    job = JobSubmissionClient(dashboard).get_job_info(submission)
    job_end = job.end_time / 1000
    print(
        f"\nsimulated cluster: {len(workers)} worker node(s) started; submit -> first worker node "
        f"{first_up - started:.0f} s, submit -> first trial running {first_trial - started:.0f} s, "
        f"job end -> last worker node stopped {last_down - job_end:.0f} s, "
        f"sweep job {finished - started:.0f} s"
    )
