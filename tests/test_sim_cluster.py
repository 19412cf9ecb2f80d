"""The cluster path on a simulated autoscaling cluster (infra/sim/): a head with no CPU and one
2-CPU worker type scaling 0..2, as Ray's fake multi-node provider runs it on this machine.

One smoke grid of two trials of the same config and seed (they differ only in how often the
final inference benchmark repeats, which training never sees) is submitted with
`ray job submit --working-dir .`. Worker nodes must come up from zero and run the two trials
on two nodes at once; once one trial has checkpointed an epoch, its node is killed (its raylet
and every process under it, as a lost machine). That trial resumes from its last checkpoint
elsewhere, logs each epoch once and ends exactly where the undisturbed one does; then every
worker node scales down. The test prints the scale-up, recovery and scale-down times.

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


def _epochs(trial_dir: Path) -> list[dict]:
    path = trial_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.timeout(1800)
def test_grid_scales_up_from_zero_resumes_a_trial_of_a_lost_node_and_scales_down(
    sim_cluster, smoke_dataset, tmp_path
):
    dashboard = sim_cluster["RAY_ADDRESS"]
    gcs_port = sim_cluster["AUDIOSWEEP_RAY_PORT"]
    assert _worker_nodes(dashboard) == [], "the simulated cluster must start without workers"
    epochs = 3
    space = tmp_path / "sim-grid.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "family": "sim-grid",
                "kind": "grid",
                "archs": ["convnext_tiny"],
                "convs": ["dsc"],
                "seeds": [0],
                "axes": {"bench.repeats": [1, 2]},
            }
        )
    )
    run_root = tmp_path / "runs"
    trials_dir = run_root / "sweeps" / "sim-grid" / "trials"
    submission = f"sim-grid-{secrets.token_hex(4)}"
    log = tmp_path / "job.log"
    started = time.time()
    # Two workers x 0.6 CPU are a placement group two trials cannot share on a 2-CPU node,
    # and with 0.5 CPU for data the sweep plans one trial per node: two at once, on two nodes
    # that the autoscaler must start (data_cpus alone is a plan, not a reservation). The run
    # root is a `file://` URI: written through pyarrow's file systems, the path an s3:// or
    # gs:// run root takes.
    with open(log, "w") as out:
        job = subprocess.Popen(
            [
                str(VENV_BIN / "ray"), "job", "submit", "--submission-id", submission,
                "--working-dir", str(REPO), "--",
                "python", "jobs/grid.py", "--space", str(space), "--preset", "smoke",
                f"data.path={smoke_dataset}", f"train.epochs={epochs}",
                "train.cpus_per_worker=0.6",
                "--run-root", run_root.as_uri(), "--name", "sim-grid",
            ],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=sim_cluster,
        )  # fmt: skip
    client = _client(sim_cluster["MLFLOW_TRACKING_URI"])
    try:
        # Both trials have reported (and checkpointed) an epoch, on their own nodes; the one
        # that has not finished is the victim.
        deadline = time.monotonic() + 900
        victim = reference = None
        while victim is None:
            assert job.poll() is None, (
                "the job ended before a node was killed:\n" + log.read_text()[-5000:]
            )
            assert time.monotonic() < deadline, "no two trials with a checkpoint after 900 s"
            time.sleep(1)
            if client.get_experiment_by_name("sim-grid") is None:
                continue
            runs = _runs(client, "sim-grid", "sim-grid", "trial")
            keys = {r.info.run_id: r.data.tags["audiosweep.trial_key"] for r in runs}
            if len(runs) < 2 or not all(_epochs(trials_dir / k) for k in keys.values()):
                continue
            running = [r for r in runs if len(_epochs(trials_dir / keys[r.info.run_id])) < epochs]
            assert running, "both trials trained every epoch before a node could be killed"
            victim = running[0]
            reference = next(r for r in runs if r.info.run_id != victim.info.run_id)
        victim_dir = trials_dir / victim.data.tags["audiosweep.trial_key"]
        reference_dir = trials_dir / reference.data.tags["audiosweep.trial_key"]
        lost_node = _epochs(victim_dir)[0]["node_id"]  # rank 0's node: where the workers train
        reference_node = _epochs(reference_dir)[0]["node_id"]
        assert reference_node != lost_node, "the two trials shared one node"
        before = _train_workers(dashboard)
        reported = len(_history(client, victim.info.run_id, "eval_map"))
        killed_at = time.time()
        killed = _kill_node(gcs_port, lost_node)

        # Recovery: a new Train worker alive, then the next epoch reported.
        workers_back = None
        while len(_history(client, victim.info.run_id, "eval_map")) <= reported:
            assert job.poll() is None, "the job ended during recovery:\n" + log.read_text()[-5000:]
            assert time.time() - killed_at < 600, "no epoch reported 600 s after the node loss"
            if workers_back is None and _train_workers(dashboard) - before:
                workers_back = time.time()
            time.sleep(1)
        assert job.wait(timeout=900) == 0, log.read_text()[-6000:]
    finally:
        if job.poll() is None:
            job.kill()
    finished = time.time()
    text = log.read_text()
    assert "succeeded" in text, text[-6000:]
    assert "cluster capacity from autoscaling config" in text and "up to 2 at once" in text, text[
        -6000:
    ]

    runs = {r.info.run_id: r for r in _runs(client, "sim-grid", "sim-grid", "trial")}
    assert len(runs) == 2, "a restarted trial must log into its own run, not a new one"
    ref, resumed = runs[reference.info.run_id], runs[victim.info.run_id]
    for run in (ref, resumed):
        assert run.info.status == "FINISHED", run.data.tags["audiosweep.trial_key"]
        assert {"eval_map", "final_map", "train_samples_per_s"} <= set(run.data.metrics)
        assert run.data.params["train.gpus_per_worker"] == "0.0"  # decided on the driver
        for metric in ("eval_map", "train_loss", "lr"):
            steps = [s for s, _, _ in _history(client, run.info.run_id, metric)]
            assert steps == list(range(1, epochs + 1)), (
                run.data.tags["audiosweep.trial_key"],
                metric,
                steps,
            )
    # The trials ran on worker nodes the autoscaler started, two of them at once.
    worker_ids = {n.node_id for n in _worker_nodes(dashboard)}
    trial_nodes = {reference_node, lost_node} | {
        run.data.tags["audiosweep.node_id"] for run in (ref, resumed)
    }
    assert trial_nodes <= worker_ids, (trial_nodes, worker_ids)
    # The reference was never disturbed: each epoch once, all on its own node.
    ref_rows = _epochs(reference_dir)
    assert [r["epoch"] for r in ref_rows] == list(range(1, epochs + 1))
    assert {r["node_id"] for r in ref_rows} == {reference_node}
    # The victim resumed from its checkpoint, not from scratch: Ray Train reported each epoch
    # once (a restart from scratch appends epoch 1 again to the run folder's metrics.jsonl).
    rows = _epochs(victim_dir)
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
    # Checkpoints and Tune state live under the run root.
    assert list(victim_dir.glob("checkpoint_*")), sorted(p.name for p in victim_dir.iterdir())
    assert list((run_root / "sweeps" / "sim-grid" / "tune").glob("experiment_state*.json"))

    # Scale-down: the idle timeout (15 s in infra/sim/cluster.yaml) ends every worker node.
    deadline = time.monotonic() + 300
    while any(n.state == "ALIVE" for n in _worker_nodes(dashboard)):
        assert time.monotonic() < deadline, "worker nodes still alive 300 s after the sweep"
        time.sleep(3)
    workers = _worker_nodes(dashboard)
    first_up = min(n.start_time_ms for n in workers) / 1000
    last_down = max(n.end_time_ms for n in workers) / 1000
    first_trial = min(run.info.start_time for run in runs.values()) / 1000
    last_trial_end = max(run.info.end_time for run in runs.values()) / 1000
    next_epoch = _history(client, resumed.info.run_id, "eval_map")[reported][2] / 1000
    replacement = [n.start_time_ms / 1000 for n in workers if n.start_time_ms / 1000 > killed_at]
    print(
        f"\nsimulated cluster: {len(workers)} worker node(s) started; submit -> first worker "
        f"node {first_up - started:.0f} s, submit -> first trial running "
        f"{first_trial - started:.0f} s; killed node {lost_node[-5:]} ({killed} processes) "
        f"after epoch {reported} of {epochs}: "
        + (f"replacement node up {min(replacement) - killed_at:.0f} s, " if replacement else "")
        + (
            f"Train workers running again {workers_back - killed_at:.0f} s, "
            if workers_back
            else ""
        )
        + f"next epoch reported {next_epoch - killed_at:.0f} s after the kill; last trial end "
        f"-> last worker node stopped {last_down - last_trial_end:.0f} s; sweep job "
        f"{finished - started:.0f} s"
    )
