"""Sweeps end to end on a real Ray head and a real MLflow server, both on 127.0.0.1:
the paper's grid submitted with `ray job submit`, a sweep whose driver is killed and resumed,
and an Optuna search."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import RAY_TRAIN_ACTORS, VENV_BIN, count_actors, submit_job

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(client, family: str, sweep_id: str, role: str):
    exp = client.get_experiment_by_name(family)
    assert exp is not None, f"no MLflow experiment {family!r}"
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`audiosweep.sweep_id` = '{sweep_id}' and tags.`audiosweep.role` = '{role}'",
        max_results=1000,
    )


def _download_text(client, run_id: str, path: str, tmp: Path) -> str:
    local = client.download_artifacts(run_id, path, str(tmp))
    return Path(local).read_text()


def test_grid_smoke_via_ray_job_submit(ray_head, mlflow_server, smoke_dataset, tmp_path):
    # One worker per trial, in its Tune trial's process, as `make demo` runs them: 18 trials
    # through Ray Train's actors cost this suite about 14 minutes more on a slow 2-core machine,
    # and the two-worker path is covered by the resume, Optuna, train and simulated-cluster tests.
    run_root = tmp_path / "runs"
    proc = submit_job(
        ray_head["dashboard"],
        [
            "jobs/grid.py",
            "--preset",
            "smoke",
            f"data.path={smoke_dataset}",
            "train.epochs=1",
            "train.num_workers=1",
            "train.in_process=true",
            "--run-root",
            str(run_root),
            "--name",
            "grid-smoke",
        ],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server, "AUDIOSWEEP_GIT_COMMIT": "test-commit"},
        timeout=3000,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr

    client = _client(mlflow_server)
    (parent,) = _runs(client, "dcls-audio-grid", "grid-smoke", "sweep")
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000,
    )
    assert len(children) == 18
    cases = {}
    for child in children:
        tags, metrics, params = child.data.tags, child.data.metrics, child.data.params
        assert child.info.status == "FINISHED"
        assert {"arch", "conv", "case", "seed", "preset", "git_commit"} <= set(tags)
        assert tags["git_commit"] == "test-commit" and tags["preset"] == "smoke"
        for key in (
            "eval_map",
            "final_map",
            "params_total",
            "macs_per_clip",
            "train_step_peak_bytes",
            "train_samples_per_s",
        ):
            assert key in metrics, (key, tags["case"])
        assert 0.0 <= metrics["eval_map"] <= 1.0
        assert params["model.conv"] == tags["conv"]
        if tags["conv"] == "dsc":
            assert metrics["params_dcls_positions"] == 0
        else:
            assert metrics["params_dcls_positions"] > 0
        cases.setdefault(tags["case"], set()).add(int(tags["seed"]))
    assert len(cases) == 6 and all(seeds == {0, 1, 2} for seeds in cases.values())
    # Every trial run carries the dataset it read as MLflow inputs, digest = its fingerprint.
    from audiosweep.data import DatasetInfo

    fingerprint = DatasetInfo.load(smoke_dataset).fingerprint[:16]
    assert parent.data.tags["audiosweep.dataset"] == fingerprint
    for child in children:
        inputs = {
            d.dataset.name: ({t.key: t.value for t in d.tags}, d.dataset.digest)
            for d in client.get_run(child.info.run_id).inputs.dataset_inputs
        }
        assert inputs == {
            f"{smoke_dataset.name}/train": ({"mlflow.data.context": "training"}, fingerprint),
            f"{smoke_dataset.name}/eval": ({"mlflow.data.context": "evaluation"}, fingerprint),
        }
        assert child.data.tags["audiosweep.dataset"] == fingerprint

    artifacts = {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert {"config.yaml", "per_class_ap.csv", "learning_curves.png"} <= artifacts
    dcls_child = next(c for c in children if c.data.tags["conv"] == "dcls_gauss")
    assert "dcls_positions.png" in {a.path for a in client.list_artifacts(dcls_child.info.run_id)}

    rows = list(
        csv.DictReader(
            io.StringIO(_download_text(client, parent.info.run_id, "report/report.csv", tmp_path))
        )
    )
    assert len(rows) == 6
    for row in rows:
        assert int(row["seeds"]) == 3
        assert row["map_mean"] not in ("", "nan") and row["map_std"] not in ("", "nan")
    md = _download_text(client, parent.info.run_id, "report/report.md", tmp_path)
    assert md.count("±") >= 6 and "Welch p" in md
    # Throughput measured once, side by side, after the trials: on the parent run and in the
    # report, with how it was measured (smoke: 2 s clips, hop 320, batch 2, 1 thread).
    speeds = {k: v for k, v in parent.data.metrics.items() if k.startswith("throughput/")}
    assert len(speeds) == 6 * 4  # samples/s and x DSC, inference and training step
    assert speeds["throughput/convnext_tiny/dsc/7x49/infer_x_dsc"] == 1.0
    assert parent.data.tags["audiosweep.throughput.input_shape"] == "2x1x128x201"
    assert "side by side in one process on the CPU, 1 thread, input 2x1x128x201" in md
    for row in rows:
        assert float(row["infer_samples_per_s"]) > 0 and float(row["macs_per_clip"]) > 0
    assert f"Dataset fingerprint: {fingerprint} (18 trials)." in md
    assert "report.png" in {
        Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "report")
    }


def _trial_epochs(run_root: Path, sweep_id: str) -> dict[str, list[int]]:
    """Each trial's epochs, as its run folder's metrics.jsonl lists them."""
    trials = run_root / "sweeps" / sweep_id / "trials"
    return {
        metrics.parent.name: [
            json.loads(line)["epoch"] for line in metrics.read_text().splitlines()
        ]
        for metrics in trials.glob("*/metrics.jsonl")
    }


def test_killed_sweep_driver_resumes_without_rerunning_finished_trials(
    ray_head, mlflow_server, smoke_dataset, tmp_path
):
    """A sweep of one-worker trials run in their Tune trial's process (`train.in_process`, as
    `make demo` runs them): the driver is killed once the first trial has finished, and
    `--resume` runs only the rest. Every epoch of every trial reaches Tune and MLflow once,
    and no Ray Train actor is started. (Ray Train's own restarts of two-worker trials are
    covered by test_train_integration.py and test_sim_cluster.py.)"""
    address = ray_head["address"]
    actors_before = {name: count_actors(address, name) for name in RAY_TRAIN_ACTORS}
    space = tmp_path / "resume.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "family": "resume-test",
                "kind": "grid",
                "archs": ["convnext_tiny"],
                "convs": ["dsc", "dcls_gauss"],
                "seeds": [0],
            }
        )
    )
    run_root = tmp_path / "runs"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    base = [
        str(VENV_BIN / "audiosweep"),
        "sweep",
        str(space),
        "--preset",
        "smoke",
        f"data.path={smoke_dataset}",
        "train.epochs=2",
        "train.num_workers=1",
        "train.cpus_per_worker=0.5",
        "train.in_process=true",
        "sweep.max_concurrent_trials=1",
        "--run-root",
        str(run_root),
        "--name",
        "resume-smoke",
        "--address",
        address,
    ]
    client = _client(mlflow_server)
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(
            base, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 900
        finished = []
        while time.monotonic() < deadline and first.poll() is None:
            exp = client.get_experiment_by_name("resume-test")
            if exp is not None:
                finished = [
                    r
                    for r in _runs(client, "resume-test", "resume-smoke", "trial")
                    if r.info.status == "FINISHED"
                ]
                if finished:
                    break
            time.sleep(1)
        assert finished and first.poll() is None, (
            "no trial finished before the driver ended:\n" + log.read_text()[-4000:]
        )
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-sweep, without any cleanup
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    done_before = {r.data.tags["audiosweep.trial_key"]: r.info.end_time for r in finished}
    epochs_before = _trial_epochs(run_root, "resume-smoke")

    resumed = subprocess.run(
        base + ["--resume"], capture_output=True, text=True, env=env, cwd=REPO, timeout=1800
    )
    assert resumed.returncode == 0, resumed.stdout[-6000:] + resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout

    trials = _runs(client, "resume-test", "resume-smoke", "trial")
    assert len(trials) == 2  # a restarted trial reuses its child run; no duplicates
    assert sorted(r.data.tags["conv"] for r in trials) == ["dcls_gauss", "dsc"]
    by_key = {r.data.tags["audiosweep.trial_key"]: r for r in trials}
    epochs_after = _trial_epochs(run_root, "resume-smoke")
    for key, end_time in done_before.items():
        assert by_key[key].info.end_time == end_time, f"finished trial {key} ran again"
        assert epochs_after[key] == epochs_before[key]
    assert epochs_after == {key: [1, 2] for key in by_key}  # no epoch twice
    for run in trials:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "eval_map")
        assert sorted(m.step for m in history) == [1, 2]
        assert "final_map" in run.data.metrics and "macs_per_clip" in run.data.metrics
    # Tune saw both epochs of the undisturbed trial, each with the checkpoint it was persisted
    # with.
    tune_dir = run_root / "sweeps" / "resume-smoke" / "tune"
    (key,) = done_before
    trial_dir = by_key[key].data.tags["case"].replace("/", "-") + "-s0-"
    (result,) = [p for p in tune_dir.rglob("result.json") if p.parent.name.startswith(trial_dir)]
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    assert [r["epoch"] for r in rows[:2]] == [1, 2]
    assert all(Path(r["checkpoint_path"]).name.startswith("checkpoint_") for r in rows[:2])
    assert {name: count_actors(address, name) for name in RAY_TRAIN_ACTORS} == actors_before


def test_optuna_search_logs_searched_values(ray_head, mlflow_server, smoke_dataset, tmp_path):
    """Also selection on a validation split: ASHA and Optuna decide on `val_map` (Tune refuses
    results without the metric it was given), `best_map` is the best `val_map`, and the eval
    split is scored as the final score; the runs carry all three splits as dataset inputs."""
    import shutil

    from audiosweep.data.split import carve_validation

    dataset = tmp_path / "smoke_val"
    shutil.copytree(smoke_dataset, dataset)
    carve_validation(dataset, fraction=0.25, seed=0)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "RAY_ADDRESS": ray_head["address"]}
    proc = subprocess.run(
        [
            str(VENV_BIN / "python"),
            "jobs/optuna_search.py",
            "--preset",
            "smoke",
            f"data.path={dataset}",
            "data.val_split=val",
            "train.epochs=1",
            "train.num_workers=1",
            "train.cpus_per_worker=0.5",
            "train.in_process=true",
            "--num-samples",
            "3",
            "--run-root",
            str(tmp_path / "runs"),
            "--name",
            "optuna-smoke",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    space = yaml.safe_load((REPO / "search_spaces" / "optuna_dcls.yaml").read_text())["params"]
    client = _client(mlflow_server)
    trials = _runs(client, "dcls-audio-optuna", "optuna-smoke", "trial")
    assert len(trials) == 3
    sampled = set()
    for run in trials:
        params = run.data.params
        metrics = run.data.metrics
        assert {"eval_map", "val_map", "best_map"} <= set(metrics)
        val_curve = [m.value for m in client.get_metric_history(run.info.run_id, "val_map")]
        eval_curve = [m.value for m in client.get_metric_history(run.info.run_id, "eval_map")]
        if run.info.status == "FINISHED":
            assert len(val_curve) == 1 and metrics["final_map"] == eval_curve[-1]
        assert metrics["best_map"] == max(val_curve)
        contexts = {
            d.dataset.name.split("/")[-1]: d.tags[0].value
            for d in client.get_run(run.info.run_id).inputs.dataset_inputs
        }
        assert contexts == {"train": "training", "eval": "evaluation", "val": "validation"}
        ks = int(params["model.dilated_kernel_size"])
        assert ks in space["model.dilated_kernel_size"]["values"]
        kc = int(params["model.kernel_count"])
        assert space["model.kernel_count"]["low"] <= kc < space["model.kernel_count"]["high"]
        lr_scale = float(params["optim.position_lr_scale"])
        assert (
            space["optim.position_lr_scale"]["low"]
            <= lr_scale
            <= space["optim.position_lr_scale"]["high"]
        )
        dp = float(params["model.drop_path_rate"])
        assert space["model.drop_path_rate"]["low"] <= dp <= space["model.drop_path_rate"]["high"]
        sampled.add((ks, kc, lr_scale, dp))
    assert len(sampled) == 3  # the searcher proposed distinct points
