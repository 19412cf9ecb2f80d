"""GPU scheduling without GPUs: concurrency, placement and device choice computed over
GPU-shaped node types (sweep/capacity.py), and where the node types are read from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from audiosweep.capacity import (
    Capacity,
    NodeType,
    TrialNeeds,
    _autoscaler_config_path,
    default_worker_gpus,
    max_concurrent,
    node_types_from_alive_nodes,
    node_types_from_autoscaling_config,
    trials_that_fit,
)
from audiosweep.config import ConfigError, TrialConfig, load_preset
from audiosweep.sweep.plan import max_concurrent_trials

REPO = Path(__file__).resolve().parents[1]
HEAD = NodeType("head", {"CPU": 0}, 1)
# p4d.24xlarge-like: 8 GPUs, 96 vCPUs; g5.2xlarge-like: 1 GPU, 8 vCPUs.
GPU8 = {"CPU": 96, "GPU": 8}
GPU1 = {"CPU": 8, "GPU": 1}


def _needs(workers: int, cpu: float, gpu: float = 0, data: float = 1.0, task: float = 1.0):
    worker = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    return TrialNeeds(workers=workers, worker=worker, data_cpus=data, data_read_cpus=task)


def test_issue_shape_scales_from_zero_instead_of_refusing() -> None:
    # A head with 0 CPU, one 2-CPU worker type scaling 0..2: nothing is alive at submit time.
    types = [HEAD, NodeType("worker", {"CPU": 2}, 2)]
    smoke = load_preset("smoke", [])
    # A smoke trial holds 2 x 0.25 (workers) + 2 x 0.2 (data tasks) + 0.01 (driver) = 0.91 CPU:
    # two per 2-CPU node, on the two nodes the type can grow to.
    assert max_concurrent_trials(smoke, Capacity(types, "test")) == 4
    # One trial per node when its data takes a whole CPU (the integration test's setting).
    assert (
        max_concurrent_trials(smoke.with_overrides({"sweep.data_cpus": 1.0}), Capacity(types, "t"))
        == 2
    )
    # The old reading, the nodes alive now (only the head), still refuses, and says what to set.
    alive = Capacity([HEAD], "the nodes alive now", complete=False)
    with pytest.raises(ConfigError, match="sweep.max_concurrent_trials and train.gpus_per_worker"):
        max_concurrent_trials(smoke, alive)
    assert (
        max_concurrent_trials(smoke.with_overrides({"sweep.max_concurrent_trials": 2}), alive) == 2
    )


@pytest.mark.parametrize(("nodes", "trials"), [(1, 1), (2, 2), (4, 4)])
def test_paper_preset_on_8_gpu_nodes(nodes: int, trials: int) -> None:
    paper = load_preset("paper", [])
    types = [HEAD, NodeType("p4d", GPU8, nodes)]
    assert default_worker_gpus(types) == 1.0
    assert max_concurrent_trials(paper, Capacity(types, "test")) == trials
    needs = TrialNeeds.of(paper, 1.0)
    assert needs.worker == {"CPU": 8, "GPU": 1} and needs.workers == 8


def test_paper_preset_on_1_gpu_8_cpu_nodes_leaves_no_cpu_for_data() -> None:
    # 8 workers x 8 CPU fill eight g5.2xlarge nodes: Ray Data would starve, so refuse up front.
    paper = load_preset("paper", [])
    types = [HEAD, NodeType("gpu_1x_a10g", GPU1, 8)]
    with pytest.raises(ConfigError, match="more than the cluster can grow to") as err:
        max_concurrent_trials(paper, Capacity(types, "test"))
    assert "\n" not in str(err.value)
    # Six CPUs per worker leave two per node for data: then one trial spans the eight nodes.
    six = paper.with_overrides({"train.cpus_per_worker": 6})
    assert max_concurrent_trials(six, Capacity(types, "test")) == 1


def test_worker_larger_than_every_node_type_fails_in_one_line() -> None:
    types = [HEAD, NodeType("gpu_1x", GPU1, 8)]
    with pytest.raises(ConfigError, match="one trial worker needs .*GPU: 2.*more than any node"):
        max_concurrent(types, _needs(1, 4, gpu=2))
    with pytest.raises(ConfigError, match="no nodes"):
        max_concurrent([NodeType("worker", GPU1, 0)], _needs(1, 1))


def test_fractional_cpus_and_fractional_gpus_pack_per_node() -> None:
    # 8 workers x (0.5 CPU, 1 GPU) fill one 8-GPU node; data uses its spare CPUs.
    assert trials_that_fit([HEAD, NodeType("g8", GPU8, 3)], _needs(8, 0.5, gpu=1)) == 3
    # Half a GPU per worker: two trials of 8 workers share one 8-GPU node.
    assert trials_that_fit([NodeType("g8", GPU8, 1)], _needs(8, 0.5, gpu=0.5)) == 2
    # 2 workers x 0.25 CPU + 0.5 data (in 0.25 CPU tasks) + 0.01 driver on a 2-CPU node.
    assert (
        trials_that_fit([NodeType("c2", {"CPU": 2}, 1)], _needs(2, 0.25, data=0.5, task=0.25)) == 1
    )


def test_a_trial_spans_single_gpu_nodes_like_a_pack_placement_group() -> None:
    one_gpu = [HEAD, NodeType("gpu_1x", {"CPU": 16, "GPU": 1}, 8)]
    assert trials_that_fit(one_gpu, _needs(8, 8, gpu=1)) == 1
    assert trials_that_fit(one_gpu, _needs(4, 8, gpu=1)) == 2
    assert trials_that_fit(one_gpu, _needs(3, 8, gpu=1)) == 2  # 2 GPUs left over: not a trial


def test_gpu_workers_never_land_on_cpu_only_node_types() -> None:
    types = [NodeType("cpu", {"CPU": 64}, 4), NodeType("gpu", {"CPU": 16, "GPU": 4}, 1)]
    assert default_worker_gpus(types) == 1.0
    assert trials_that_fit(types, _needs(4, 2, gpu=1)) == 1
    assert default_worker_gpus([NodeType("cpu", {"CPU": 64}, 4)]) == 0.0
    assert default_worker_gpus([HEAD, NodeType("gpu", GPU1, 0)]) == 0.0


def test_explicit_concurrency_is_kept_but_an_impossible_trial_still_fails() -> None:
    types = [HEAD, NodeType("gpu", GPU8, 1)]
    cfg = TrialConfig().with_overrides(
        {"sweep.max_concurrent_trials": 5, "train.gpus_per_worker": 1}
    )
    assert max_concurrent_trials(cfg, Capacity(types, "test")) == 5
    big = cfg.with_overrides({"train.num_workers": 9})
    with pytest.raises(ConfigError, match="more than the cluster can grow to"):
        max_concurrent_trials(big, Capacity(types, "test"))


def test_node_types_of_the_simulated_cluster_config() -> None:
    config = yaml.safe_load((REPO / "infra" / "sim" / "cluster.yaml").read_text())
    types = {t.name: t for t in node_types_from_autoscaling_config(config)}
    assert (
        types["ray.head.default"].resources == {"CPU": 0}
        and types["ray.head.default"].max_workers == 1
    )
    assert types["gpu_1x_a10g"].resources == {"CPU": 2} and types["gpu_1x_a10g"].max_workers == 2


def test_global_max_workers_caps_the_worker_types_largest_first() -> None:
    config = {
        "max_workers": 8,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "gpu_1x": {"resources": GPU1, "max_workers": 8},
            "gpu_4x": {"resources": {"CPU": 48, "GPU": 4}, "max_workers": 2},
            "cpu": {"resources": {"CPU": 4}},  # no per-type max: the global one (Ray's default)
        },
    }
    types = {t.name: t.max_workers for t in node_types_from_autoscaling_config(config)}
    assert types == {"head": 1, "gpu_1x": 6, "gpu_4x": 2, "cpu": 0}


def test_alive_nodes_are_grouped_by_shape_without_memory_and_node_ids() -> None:
    nodes = [
        {"Alive": True, "Resources": {"CPU": 2.0, "memory": 1e9, "node:127.0.0.1": 1.0}},
        {"Alive": True, "Resources": {"CPU": 2.0, "memory": 2e9, "node:10.0.0.2": 1.0}},
        {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": True, "Resources": {"object_store_memory": 1e9, "node:__internal_head__": 1.0}},
    ]
    types = sorted(node_types_from_alive_nodes(nodes), key=lambda t: t.max_workers)
    assert [(t.resources, t.max_workers) for t in types] == [({}, 1), ({"CPU": 2.0}, 2)]


def test_the_autoscaler_config_is_found_for_this_gcs_only(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    ours, theirs = tmp_path / "ours.yaml", tmp_path / "theirs.yaml"
    ours.write_text("{}")
    theirs.write_text("{}")
    monitor = "/venv/lib/python3.11/site-packages/ray/autoscaler/_private/monitor.py"
    for pid, gcs, cfg in ((11, "127.0.0.1:7000", theirs), (12, "127.0.0.1:6411", ours)):
        (proc / str(pid)).mkdir(parents=True)
        args = ["python", "-u", monitor, f"--gcs-address={gcs}", f"--autoscaling-config={cfg}"]
        (proc / str(pid) / "cmdline").write_bytes("\0".join(args).encode() + b"\0")
    (proc / "self").mkdir()
    assert _autoscaler_config_path("127.0.0.1:6411", proc) == str(ours)
    assert _autoscaler_config_path("127.0.0.1:7000", proc) == str(theirs)
    assert _autoscaler_config_path("127.0.0.1:1", proc) is None
    assert _autoscaler_config_path(None, proc) is None


def test_a_trial_run_in_process_holds_its_worker_and_driver_as_one_bundle() -> None:
    demo = load_preset("demo", [])
    assert demo.train.in_process
    needs = TrialNeeds.of(demo, 0.0)
    assert needs.worker == {"CPU": 0.51} and needs.driver_cpus == 0.0
    assert "in its driver's process" in needs.describe()
    two_cores = [NodeType("local", {"CPU": 2.0}, 1)]
    # 2 x (0.5 + 0.01 + 0.4 for data) = 1.82 of 2 CPUs; a third trial does not fit.
    assert max_concurrent_trials(demo, Capacity(two_cores, "test")) == 2
    # Its driver and worker cannot be split over two nodes with half the room each.
    halves = [NodeType("half", {"CPU": 0.5}, 4)]
    one = demo.with_overrides({"sweep.data_cpus": 0.2, "data.read_cpus": 0.2})
    with pytest.raises(ConfigError, match="more than any node type offers"):
        max_concurrent_trials(one, Capacity(halves, "test"))


def test_the_tune_trial_reserves_the_bundle_the_plan_counted() -> None:
    from audiosweep.sweep.tuner import trial_driver_resources

    assert trial_driver_resources(load_preset("demo", [])) == {"cpu": 0.51}
    assert trial_driver_resources(load_preset("smoke", [])) == {"cpu": 0.01}
    gpu = load_preset("demo", ["train.gpus_per_worker=1"])
    assert trial_driver_resources(gpu) == {"cpu": 0.51, "gpu": 1.0}
