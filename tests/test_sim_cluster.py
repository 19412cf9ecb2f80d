"""The cluster path on a simulated autoscaling cluster (infra/sim/): a head with no CPU and one
2-CPU worker type scaling 0..2, as Ray's fake multi-node provider runs it on this machine.

The smoke grid is submitted with `ray job submit --working-dir .`; the test checks that worker
nodes came up from zero, that trials ran on two nodes, that every child run finished with its
metrics, and prints submit → first trial, scale-up and scale-down times. Then a worker node is
killed mid-trial (its raylet and every process under it, as a lost machine): the trial resumes
from its last checkpoint elsewhere, logs each epoch once and ends exactly where an undisturbed
run of the same config and seed does; the test prints the recovery times. Both sweeps share one
simulated cluster, started for this module and stopped after it.

    make test PYTEST_ARGS="tests/test_sim_cluster.py -s"
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import SERVICE_PORT_VARIABLES, VENV_BIN, free_port_env, parse_exports
from test_sweep_integration import _client, _runs

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
SIM = REPO / "infra" / "sim"


@pytest.fixture(scope="module")
def sim_cluster(ray_environment, tmp_path_factory) -> dict[str, str]:
    """infra/sim/up.sh on free ports and a private state folder; infra/sim/down.sh after this
    module's tests (an idle simulated cluster would slow every test after it on 2 cores)."""
    state = tmp_path_factory.mktemp("sim") / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        free_port_env(SERVICE_PORT_VARIABLES),
        AUDIOSWEEP_STATE=str(state),
        AUDIOSWEEP_VENV_BIN=str(VENV_BIN),
        AUDIOSWEEP_STOP_GRACE="5",  # the simulation's state is thrown away
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
    last_trial_end = max(run.info.end_time for run in trials) / 1000
    from ray.job_submission import JobSubmissionClient

    job = JobSubmissionClient(dashboard).get_job_info(submission)
    job_end = job.end_time / 1000
    print(
        f"\nsimulated cluster: {len(workers)} worker node(s) started; submit -> first worker node "
        f"{first_up - started:.0f} s, submit -> first trial running {first_trial - started:.0f} s, "
        f"last trial end -> last worker node stopped {last_down - last_trial_end:.0f} s "
        f"(job end -> {last_down - job_end:.0f} s), sweep job {finished - started:.0f} s"
    )


def _node_processes(gcs_port: str, node_id: str) -> list[int]:
    """Pids of one simulated worker node: its raylet (found by node id and this cluster's GCS
    port, so another simulated cluster on the machine is never touched) and every process
    under it (its agents and workers: the trial's actors)."""
    children: dict[int, list[int]] = {}
    raylets = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
        if (
            args[0].endswith("raylet")
            and f"--node_id={node_id}" in args
            and any(a.startswith("--gcs-address=") and a.endswith(f":{gcs_port}") for a in args)
        ):
            raylets.append(int(entry.name))
    pids, todo = [], list(raylets)
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def _kill_node(gcs_port: str, node_id: str) -> int:
    """SIGKILL a simulated worker node, as a machine that vanishes: no process of it gets to
    clean up. Returns how many processes were killed."""
    pids = _node_processes(gcs_port, node_id)
    assert pids, f"no raylet of node {node_id} on the cluster at port {gcs_port}"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _train_workers(dashboard: str) -> set[str]:
    """Actor ids of the Ray Train workers alive now."""
    from ray.util.state import list_actors

    alive = list_actors(
        address=dashboard,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
        raise_on_missing_output=False,
    )
    return {a.actor_id for a in alive}


def _history(client, run_id: str, key: str) -> list[tuple[int, float, int]]:
    """(step, value, timestamp ms) of a metric, by step."""
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))


@pytest.mark.timeout(1800)
def test_trial_on_a_lost_node_resumes_from_its_checkpoint_with_the_same_result(
    sim_cluster, smoke_dataset, tmp_path
):
    """Two trials of the same config and seed run one after the other (they differ only in
    how often the final inference benchmark repeats, which training never sees). The first
    runs undisturbed and is the reference; the node of the second is killed once its first
    epoch is checkpointed (epochs take seconds, so the kill may land after the second). The
    second must resume from its last checkpoint on a node that is still (or newly) there, log
    each epoch once and end with the reference's mAP; the first must not run again. The run
    root is given as a `file://` URI."""
    dashboard = sim_cluster["RAY_ADDRESS"]
    gcs_port = sim_cluster["AUDIOSWEEP_RAY_PORT"]
    epochs = 3
    space = tmp_path / "sim-node-loss.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "family": "sim-node-loss",
                "kind": "grid",
                "archs": ["convnext_tiny"],
                "convs": ["dsc"],
                "seeds": [0],
                "axes": {"bench.repeats": [1, 2]},
            }
        )
    )
    run_root = tmp_path / "runs"
    submission = f"sim-node-loss-{secrets.token_hex(4)}"
    log = tmp_path / "job.log"
    started = time.time()
    with open(log, "w") as out:
        job = subprocess.Popen(
            [
                str(VENV_BIN / "ray"), "job", "submit", "--submission-id", submission,
                "--working-dir", str(REPO), "--",
                "python", "jobs/grid.py", "--space", str(space), "--preset", "smoke",
                f"data.path={smoke_dataset}", f"train.epochs={epochs}",
                "train.cpus_per_worker=0.6", "sweep.max_concurrent_trials=1",
                "--run-root", run_root.as_uri(), "--name", "node-loss",
            ],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=sim_cluster,
        )  # fmt: skip
    client = _client(sim_cluster["MLFLOW_TRACKING_URI"])
    try:
        # The reference finishes; the second trial reports (and checkpoints) its first epoch.
        deadline = time.monotonic() + 900
        reference = victim = None
        while victim is None:
            assert job.poll() is None, (
                "the job ended before the node was killed:\n" + log.read_text()[-5000:]
            )
            assert time.monotonic() < deadline, "no second trial with a checkpoint after 900 s"
            time.sleep(1)
            if client.get_experiment_by_name("sim-node-loss") is None:
                continue
            runs = _runs(client, "sim-node-loss", "node-loss", "trial")
            done = [r for r in runs if r.info.status == "FINISHED"]
            if not done:
                continue
            reference = done[0]
            others = [r for r in runs if r.info.run_id != reference.info.run_id]
            if others and _history(client, others[0].info.run_id, "eval_map"):
                victim = others[0]
        key = victim.data.tags["audiosweep.trial_key"]
        trial_dir = run_root / "sweeps" / "node-loss" / "trials" / key
        first_epoch = json.loads((trial_dir / "metrics.jsonl").read_text().splitlines()[0])
        lost_node = first_epoch["node_id"]  # rank 0's node: where the workers train
        before = _train_workers(dashboard)
        reported = len(_history(client, victim.info.run_id, "eval_map"))
        killed_at = time.time()
        killed = _kill_node(gcs_port, lost_node)

        # Recovery: a new Train worker alive, then the next epoch reported.
        workers_back = None
        while len(_history(client, victim.info.run_id, "eval_map")) < 2:
            assert job.poll() is None, "the job ended during recovery:\n" + log.read_text()[-5000:]
            assert time.time() - killed_at < 600, "no epoch reported 600 s after the node loss"
            if workers_back is None and _train_workers(dashboard) - before:
                workers_back = time.time()
            time.sleep(1)
        assert job.wait(timeout=900) == 0, log.read_text()[-6000:]
    finally:
        if job.poll() is None:
            job.kill()
    text = log.read_text()
    assert "succeeded" in text, text[-6000:]

    runs = {r.info.run_id: r for r in _runs(client, "sim-node-loss", "node-loss", "trial")}
    assert len(runs) == 2, "a restarted trial must log into its own run, not a new one"
    ref, resumed = runs[reference.info.run_id], runs[victim.info.run_id]
    assert ref.info.status == resumed.info.status == "FINISHED"
    # The reference was not run again after the node loss.
    assert ref.info.end_time == reference.info.end_time < killed_at * 1000
    for run in (ref, resumed):
        for metric in ("eval_map", "train_loss", "lr"):
            steps = [s for s, _, _ in _history(client, run.info.run_id, metric)]
            assert steps == list(range(1, epochs + 1)), (
                run.data.tags["audiosweep.trial_key"],
                metric,
                steps,
            )
    # Resumed from the epoch-1 checkpoint, not from scratch: Ray Train reported epoch 1 once
    # (a restart from scratch appends it again to the run folder's metrics.jsonl).
    rows = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert rows[0]["node_id"] == lost_node
    assert rows[-1]["node_id"] != lost_node  # trained on to the end elsewhere
    assert resumed.data.tags["audiosweep.node_id"] != lost_node
    # Deterministic resume: the same result as the undisturbed run of the same config and seed.
    assert resumed.data.metrics["final_map"] == pytest.approx(
        ref.data.metrics["final_map"], abs=1e-6
    )
    ref_loss = _history(client, ref.info.run_id, "train_loss")
    resumed_loss = _history(client, resumed.info.run_id, "train_loss")
    for (_, a, _), (_, b, _) in zip(ref_loss, resumed_loss, strict=True):
        assert b == pytest.approx(a, rel=1e-5)
    # Checkpoints and Tune state live under the run root (given as a URI: written through
    # pyarrow's file systems, the path an s3:// or gs:// run root takes).
    assert list(trial_dir.glob("checkpoint_*")), sorted(p.name for p in trial_dir.iterdir())
    assert list((run_root / "sweeps" / "node-loss" / "tune").glob("experiment_state*.json"))

    next_epoch = _history(client, resumed.info.run_id, "eval_map")[1][2] / 1000
    replacement = [
        n.start_time_ms / 1000
        for n in _worker_nodes(dashboard)
        if n.start_time_ms / 1000 > killed_at
    ]
    print(
        f"\nnode loss: killed node {lost_node[-5:]} ({killed} processes) after epoch {reported} of {epochs}; "
        f"submit -> first trial running {ref.info.start_time / 1000 - started:.0f} s; "
        + (
            f"replacement node up {min(replacement) - killed_at:.0f} s, "
            if replacement
            else "no new node, "
        )
        + (
            f"Train workers running again {workers_back - killed_at:.0f} s, "
            if workers_back
            else ""
        )
        + f"next epoch reported {next_epoch - killed_at:.0f} s after the kill"
    )
