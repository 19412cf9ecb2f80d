"""What the cluster can grow to, and how many trials fit in it.

`ray.cluster_resources()` counts only the nodes alive now: on an autoscaling cluster whose
workers scale from zero it is empty at submit time. Concurrency and device choice therefore
come from the node types the autoscaler may launch (each up to its `max_workers`), read where
Ray exposes them to a driver, and only as a last resort from the nodes alive now.

The packing functions are pure (node types + a trial's needs), so they can be tested without
a cluster; `cluster_capacity()` is the one part that asks Ray.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosweep.config import ConfigError, TrialConfig

# The Tune function trainable's own reservation: it only waits on its TorchTrainer (tuner.py).
TRIAL_DRIVER_CPU = 0.01
# A node type without a per-type limit ("unlimited" in Ray) is counted as this many nodes:
# enough for any sweep's concurrency, small enough to pack quickly.
UNLIMITED_NODES = 64
# Environment variable naming an autoscaling config YAML when the driver cannot find the one
# the head was started with (e.g. a driver that does not run on the head node).
CONFIG_ENV = "AUDIOSWEEP_AUTOSCALING_CONFIG"
_EPS = 1e-6


@dataclass(frozen=True)
class NodeType:
    """A kind of node and how many of them the cluster can have at once (the head: 1)."""

    name: str
    resources: dict[str, float]
    max_workers: int


@dataclass(frozen=True)
class TrialNeeds:
    """What one running trial holds: its Train workers (one bundle each, packed like Ray
    Train's PACK placement group), its Tune driver, and CPUs left for its Ray Data tasks."""

    workers: int
    worker: dict[str, float]
    data_cpus: float
    data_read_cpus: float
    driver_cpus: float = TRIAL_DRIVER_CPU

    @classmethod
    def of(cls, cfg: TrialConfig, gpus_per_worker: float) -> TrialNeeds:
        worker = {"CPU": cfg.train.cpus_per_worker}
        if gpus_per_worker:
            worker["GPU"] = gpus_per_worker
        driver_cpus = TRIAL_DRIVER_CPU
        if cfg.train.in_process:  # the driver is the worker: one bundle for both
            worker["CPU"] += driver_cpus
            driver_cpus = 0.0
        return cls(
            workers=cfg.train.num_workers,
            worker=worker,
            data_cpus=cfg.sweep.data_cpus,
            data_read_cpus=cfg.data.read_cpus,
            driver_cpus=driver_cpus,
        )

    def describe(self) -> str:
        driver = (
            f"+ {self.driver_cpus:g} CPU for its driver"
            if self.driver_cpus
            else "(in its driver's process)"
        )
        return (
            f"{self.workers} workers x {_fmt(self.worker)} + {self.data_cpus:g} CPU for data "
            + driver
        )


@dataclass(frozen=True)
class Capacity:
    """The node types a sweep plans with, and where they were read (shown to the user)."""

    node_types: list[NodeType]
    source: str
    # False when only the nodes alive now were visible: an autoscaling cluster may grow beyond.
    complete: bool = True
    notes: list[str] = field(default_factory=list)


def has_gpus(node_types: list[NodeType]) -> bool:
    return any(t.resources.get("GPU", 0) > 0 and t.max_workers > 0 for t in node_types)


def default_worker_gpus(node_types: list[NodeType]) -> float:
    """One GPU per worker when any node the cluster can grow to has one, else CPU training."""
    return 1.0 if has_gpus(node_types) else 0.0


def trials_that_fit(node_types: list[NodeType], needs: TrialNeeds, limit: int = 1024) -> int:
    """How many trials run at once when every node type is grown to its maximum.

    Greedy first fit, as Ray places them: a trial's workers go to the nodes it already uses
    first (PACK), then to any node with room; its driver and its data CPUs (in pieces of one
    data task) go wherever CPUs are left.
    """
    free = [dict(t.resources) for t in _expand(node_types)]
    data_piece = min(needs.data_read_cpus, needs.data_cpus) if needs.data_cpus > 0 else 0.0
    pieces = math.ceil(needs.data_cpus / data_piece - _EPS) if data_piece else 0
    count = 0
    while count < limit:
        used: list[int] = []
        for _ in range(needs.workers):
            i = _first_fit(free, needs.worker, prefer=used)
            if i is None:
                return count
            _take(free[i], needs.worker)
            if i not in used:
                used.append(i)
        for bundle in [{"CPU": needs.driver_cpus}] + [{"CPU": data_piece}] * pieces:
            i = _first_fit(free, bundle, prefer=used)
            if i is None:
                return count
            _take(free[i], bundle)
        count += 1
    return count


def max_concurrent(node_types: list[NodeType], needs: TrialNeeds) -> int:
    """`trials_that_fit`, or a one-line `ConfigError` saying why not even one trial fits."""
    n = trials_that_fit(node_types, needs)
    if n >= 1:
        return n
    if not node_types or all(t.max_workers <= 0 for t in node_types):
        raise ConfigError(f"one trial needs {needs.describe()}, but the cluster has no nodes")
    shapes = describe_node_types(node_types)
    if not any(_fits(t.resources, needs.worker) for t in node_types if t.max_workers > 0):
        raise ConfigError(
            f"one trial worker needs {_fmt(needs.worker)}, more than any node type offers "
            f"({shapes}); lower train.cpus_per_worker/train.gpus_per_worker or add a larger node type"
        )
    raise ConfigError(
        f"one trial needs {needs.describe()}, more than the cluster can grow to ({shapes}); "
        "lower train.num_workers, train.cpus_per_worker or sweep.data_cpus"
    )


def describe_node_types(node_types: list[NodeType]) -> str:
    return ", ".join(f"{t.name}: {t.max_workers} x {_fmt(t.resources)}" for t in node_types)


def node_types_from_autoscaling_config(config: dict[str, Any]) -> list[NodeType]:
    """Node types of a cluster launcher / autoscaling config (`available_node_types`).

    The head counts once; worker types count up to their `max_workers` (default: the global
    one, as Ray fills it in), and all worker types together up to the global `max_workers`:
    the types that hold the most of one bundle are assumed to be launched first.
    """
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    global_max = config.get("max_workers")
    out: list[NodeType] = []
    for name, spec in types.items():
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        if name == head:
            out.append(NodeType(name, resources, 1))
            continue
        n = spec.get("max_workers", global_max)
        n = UNLIMITED_NODES if n is None or n < 0 else int(n)
        out.append(NodeType(name, resources, n))
    if global_max is not None and global_max >= 0:
        out = _cap_workers(out, head, int(global_max))
    return out


def _cap_workers(types: list[NodeType], head: str | None, cap: int) -> list[NodeType]:
    # Largest nodes first: the estimate is what the cluster can reach, an upper bound.
    workers = sorted(
        (t for t in types if t.name != head),
        key=lambda t: (-t.resources.get("GPU", 0), -t.resources.get("CPU", 0)),
    )
    capped = {}
    for t in workers:
        n = min(t.max_workers, cap)
        cap -= n
        capped[t.name] = NodeType(t.name, t.resources, n)
    return [t if t.name == head else capped[t.name] for t in types]


def node_types_from_cluster_config(config: Any) -> list[NodeType]:
    """Node types of the GCS `ClusterConfig` proto (what Ray Data reads; reported by platforms
    that manage the cluster, not by the open-source autoscaler of Ray 2.60)."""
    out = []
    for group in config.node_group_configs:
        n = UNLIMITED_NODES if group.max_count < 0 else int(group.max_count)
        resources = {k: float(v) for k, v in group.resources.items()}
        out.append(NodeType(group.name or _fmt(resources), resources, n))
    return out


def node_types_from_alive_nodes(nodes: list[dict[str, Any]]) -> list[NodeType]:
    """One node type per distinct shape of the nodes alive now (`ray.nodes()`)."""
    shapes: dict[tuple, int] = {}
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = {
            k: float(v)
            for k, v in node.get("Resources", {}).items()
            if k in ("CPU", "GPU") or not (k.startswith("node:") or k.endswith("memory"))
        }
        key = tuple(sorted(resources.items()))
        shapes[key] = shapes.get(key, 0) + 1
    return [NodeType(f"alive node {_fmt(dict(k))}", dict(k), n) for k, n in shapes.items()]


def cluster_capacity() -> Capacity:
    """The connected cluster's node types, from the first source that has them:

    1. the GCS cluster config (platforms that report it);
    2. the autoscaling config the head's autoscaler was started with (`ray up`,
       `ray start --head --autoscaling-config`, the simulated cluster), found from this node's
       autoscaler process for the same GCS, or named by $AUDIOSWEEP_AUTOSCALING_CONFIG;
    3. the nodes alive now (fixed clusters; an autoscaling cluster that exposes neither, e.g.
       KubeRay, needs an explicit sweep.max_concurrent_trials and train.gpus_per_worker).
    """
    import ray

    from audiosweep.ray_compat import gcs_cluster_config

    config = gcs_cluster_config()
    if config is not None and config.node_group_configs:
        return Capacity(node_types_from_cluster_config(config), "the GCS cluster config")
    path = os.environ.get(CONFIG_ENV) or _autoscaler_config_path(_gcs_address())
    if path:
        import yaml

        types = node_types_from_autoscaling_config(yaml.safe_load(Path(path).read_text()))
        notes = [
            f"node type {t.name} lists no resources: counted as empty"
            for t in types
            if not t.resources and t.max_workers > 0
        ]
        return Capacity(types, f"autoscaling config {path}", notes=notes)
    return Capacity(node_types_from_alive_nodes(ray.nodes()), "the nodes alive now", False)


def _gcs_address() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().gcs_address
    except Exception:
        return None


def _autoscaler_config_path(gcs_address: str | None, proc: Path = Path("/proc")) -> str | None:
    """`--autoscaling-config` of the autoscaler (monitor.py) serving `gcs_address`, if it runs
    on this node: job drivers run on the head, where the autoscaler runs too. Matching the GCS
    address keeps other Ray clusters on the same host out."""
    if not gcs_address or not proc.is_dir():
        return None
    want = f"--gcs-address={gcs_address}"
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if want not in args or not any(
            a.endswith("autoscaler/_private/monitor.py") or a.endswith("autoscaler/v2/monitor.py")
            for a in args
        ):
            continue
        for arg in args:
            if arg.startswith("--autoscaling-config="):
                path = os.path.expanduser(arg.split("=", 1)[1])
                return path if Path(path).is_file() else None
    return None


def _expand(node_types: list[NodeType]) -> list[NodeType]:
    return [t for t in node_types for _ in range(max(0, t.max_workers))]


def _fits(free: dict[str, float], bundle: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPS >= v for k, v in bundle.items() if v > 0)


def _take(free: dict[str, float], bundle: dict[str, float]) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def _first_fit(free: list[dict[str, float]], bundle: dict[str, float], prefer: list[int]):
    for i in prefer:
        if _fits(free[i], bundle):
            return i
    return next((i for i, f in enumerate(free) if _fits(f, bundle)), None)


def _fmt(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if v}
    if not shown:
        return "{no CPU/GPU}"
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}"
