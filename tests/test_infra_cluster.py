"""infra/cluster.yaml and infra/kuberay/*.yaml checked against the code they run: node types
that can hold the paper grid's trials, a run root every node mounts, an entrypoint that
audiosweep's own argument parser accepts and whose job script exists."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from audiosweep.capacity import (
    Capacity,
    NodeType,
    default_worker_gpus,
    node_types_from_autoscaling_config,
)
from audiosweep.cli import build_parser
from audiosweep.config import list_presets, load_preset
from audiosweep.sweep.plan import max_concurrent_trials

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
# What AWS reports for the instance types in cluster.yaml (Ray fills `resources: {}` from it).
AWS = {
    "m5.2xlarge": {"CPU": 8},
    "g5.2xlarge": {"CPU": 8, "GPU": 1},
    "g5.12xlarge": {"CPU": 48, "GPU": 4},
}


def _sweep_args(command: str, app_root: str) -> tuple[Path, object]:
    """The job script a `python <script> ...` entrypoint runs, and its parsed sweep arguments."""
    argv = shlex.split(command)
    assert argv[0] == "python", command
    script = (
        REPO / Path(argv[1]).relative_to(app_root) if argv[1].startswith("/") else REPO / argv[1]
    )
    assert script.is_file(), f"{argv[1]} is not in the repository"
    args, extra = build_parser().parse_known_args(["sweep", script.stem, *argv[2:]])
    # As cli.main: dotted overrides after the options are overrides, anything else an error.
    assert all("=" in a and not a.startswith("-") for a in extra), extra
    args.overrides = [*args.overrides, *extra]
    return script, args


def test_cluster_yaml_node_types_hold_the_paper_grid_and_mount_the_run_root() -> None:
    config = yaml.safe_load((INFRA / "cluster.yaml").read_text())
    head = config["head_node_type"]
    types = config["available_node_types"]
    assert types[head]["resources"] == {"CPU": 0}
    for name, spec in types.items():
        if name != head:
            assert spec["min_workers"] == 0 and 0 < spec["max_workers"] <= config["max_workers"]
        spec["resources"] = {**AWS[spec["node_config"]["InstanceType"]], **spec["resources"]}
    node_types = node_types_from_autoscaling_config(config)
    assert default_worker_gpus(node_types) == 1.0  # GPU workers even though none is up yet
    paper = load_preset("paper", [])
    assert max_concurrent_trials(paper, Capacity(node_types, "cluster.yaml")) >= 1

    # Every node mounts the shared file system, and the documented run root lies on it.
    mount = " ".join(config["setup_commands"])
    assert "mount -t nfs4" in mount and "/mnt/shared" in mount
    text = (INFRA / "cluster.yaml").read_text()
    command = next(
        line.strip("# \\").split("-- ", 1)[1]
        for line in text.splitlines()
        if "-- python jobs/" in line
    )
    script, args = _sweep_args(command, "/")
    assert args.preset in list_presets() and args.run_root.startswith("/mnt/shared/")


def test_kuberay_rayjob_entrypoint_parses_and_fits_its_worker_group() -> None:
    docs = list(yaml.safe_load_all((INFRA / "kuberay" / "rayjob.yaml").read_text()))
    spec = next(d for d in docs if d["kind"] == "RayJob")["spec"]
    script, args = _sweep_args(spec["entrypoint"], "/app")
    assert script == REPO / "jobs" / "grid.py" and args.preset in list_presets()

    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    mounts = {m["mountPath"] for m in head["template"]["spec"]["containers"][0]["volumeMounts"]}
    node_types = [NodeType("head", {"CPU": float(head["rayStartParams"]["num-cpus"])}, 1)]
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        limits = container["resources"]["limits"]
        assert {m["mountPath"] for m in container["volumeMounts"]} == mounts
        assert group["minReplicas"] == 0
        resources = {"CPU": float(limits["cpu"]), "GPU": float(limits.get("nvidia.com/gpu", 0))}
        node_types.append(NodeType(group["groupName"], resources, group["maxReplicas"]))
    assert any(args.run_root.startswith(m + "/") for m in mounts)
    trial = load_preset(args.preset, args.overrides)
    assert max_concurrent_trials(trial, Capacity(node_types, "rayjob.yaml")) >= 1
