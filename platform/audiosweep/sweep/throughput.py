"""The sweep's controlled throughput measurement: when the trials are done, every case's model
timed side by side in one process, on one resource of the trials' kind.

A trial timing itself would share the machine with the other running trials and their data
pipelines, and the ratio of two such figures says more about the load than about the models.
Here every case's model (built from its trial config, seed 0: weights do not change speed, but
DCLS positions do, so they are spread over the whole dilated kernel as training leaves them:
initialised near the centre, the fast path would crop the kernel and time a cheaper model than
the trial trained) runs at the preset's own clip shape, one batch of each in
turn per repeat (`train/side_by_side.py`); the figures are medians, and a case's ratio to its
architecture's DSC model is the median of the per-repeat ratios. A GPU when the trials had
GPUs (a Ray task holding one), else `bench.threads` CPU threads in the sweep's driver.

The figures go to the sweep's parent run (metrics ``throughput/<arch>/<conv>/<size>x<count>/
...``, tags ``audiosweep.throughput.*``), where the report reads them back (`from_run`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from audiosweep.config import TrialConfig

CaseKey = tuple[str, str, int, int]  # (arch as the sweep names it, conv, kernel size, count)
METRIC_PREFIX = "throughput/"
TAG_PREFIX = "audiosweep.throughput."
FIGURES = ("infer_samples_per_s", "train_samples_per_s", "infer_x_dsc", "train_x_dsc")
POSITIONS = "spread over the dilated kernel, as after training"


def case_key(arch: str, cfg: TrialConfig) -> CaseKey:
    """The report's grouping of a trial (`report.fetch_trials`): a DSC kernel is 7x7, 49."""
    if cfg.model.conv == "dsc":
        return (arch, "dsc", 7, 49)
    return (arch, cfg.model.conv, cfg.model.dilated_kernel_size, cfg.model.kernel_count)


def bench_threads(cfg: TrialConfig) -> int:
    """``bench.threads``, else the threads a trial's worker trains with."""
    return cfg.bench.threads or max(1, int(cfg.train.cpus_per_worker))


def input_shape(cfg: TrialConfig) -> tuple[int, int, int, int]:
    """(batch, 1, mel bins, frames): ``bench.frames``, else the frames of the preset's clips."""
    frames = cfg.bench.frames or cfg.audio.num_frames(cfg.clip_samples())
    return (cfg.bench.batch, 1, cfg.audio.n_mels, frames)


def measure(
    cases: dict[CaseKey, dict[str, Any]],
    num_classes: int,
    *,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time each case's model (given by its trial config as a dict) side by side; returns
    {"setup": {...}, "cases": {key: {figure: value}}}. Cases whose input shape differs from
    the first case's are left out (and named in the setup)."""
    import torch

    from audiosweep.models.dcls_substitution import spread_positions
    from audiosweep.models.from_config import create_model_from_config
    from audiosweep.train.side_by_side import MODES, Timed, paired_ratio, time_interleaved

    configs = {key: TrialConfig.from_dict(c) for key, c in sorted(cases.items())}
    first = next(iter(configs.values()))
    shape = input_shape(first)
    where = torch.device(device)
    threads = bench_threads(first)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    clock = "thread" if where.type == "cpu" and threads == 1 else "wall"
    try:
        entries: dict[CaseKey, Timed] = {}
        skipped = []
        for key, cfg in configs.items():
            if input_shape(cfg) != shape:
                skipped.append("/".join(map(str, key)))
                continue
            torch.manual_seed(0)
            model = spread_positions(create_model_from_config(cfg, num_classes)).to(where)
            entries[key] = Timed("/".join(map(str, key)), model)
        x = torch.randn(*shape, device=where)
        target = (torch.rand(shape[0], num_classes, device=where) < 0.05).float()
        time_interleaved(
            list(entries.values()),
            modes=MODES,
            x=x,
            target=target,
            repeats=first.bench.repeats,
            dtype=first.bench.dtype,
            log=log,
            min_sample_s=first.bench.min_sample_s,
            clock=clock,
        )
    finally:
        torch.set_num_threads(previous_threads)
    figures: dict[CaseKey, dict[str, float]] = {}
    for key, entry in entries.items():
        dsc = next((e for k, e in entries.items() if k[0] == key[0] and k[1] == "dsc"), None)
        row = {}
        for mode, short in (("inference", "infer"), ("train", "train")):
            row[f"{short}_samples_per_s"] = shape[0] / statistics.median(entry.seconds[mode])
            row[f"{short}_x_dsc"] = (
                paired_ratio(dsc.seconds[mode], entry.seconds[mode]) if dsc else math.nan
            )
        figures[key] = row
    setup = {
        "device": str(where) if where.type == "cpu" else torch.cuda.get_device_name(where),
        "threads": threads,
        "input_shape": "x".join(map(str, shape)),
        "clip_seconds": f"{first.data.clip_seconds or 10.0:g}",
        "dtype": first.bench.dtype,
        "repeats": first.bench.repeats,
        "min_sample_s": first.bench.min_sample_s,
        "clock": clock,
        "positions": POSITIONS,
        "skipped": ", ".join(skipped),
    }
    return {"setup": setup, "cases": figures}


def sweep_cases(results: Iterable[Any], base: TrialConfig) -> dict[CaseKey, dict[str, Any]]:
    """Each case of a finished Tune run once, as the resolved config of one of its trials
    (Tune's results hold every trial's config, grid variant or Optuna sample alike)."""
    from audiosweep.sweep.spaces import trial_overrides

    clip_seconds = base.data.clip_seconds
    if clip_seconds is None:  # the dataset's, as each trial resolves it
        from audiosweep.config import resolve_path
        from audiosweep.data.schema import DatasetInfo

        clip_seconds = DatasetInfo.load(resolve_path(base.data.path)).clip_seconds
    cases: dict[CaseKey, dict[str, Any]] = {}
    for result in results:
        if not result.config:
            continue
        case, _, overrides, _ = trial_overrides(result.config)
        cfg = base.with_overrides({**overrides, "data.clip_seconds": clip_seconds})
        cases.setdefault(case_key(case.split("/")[0], cfg), cfg.to_dict())
    return cases


def measure_sweep(
    results: Iterable[Any], base: TrialConfig, num_classes: int
) -> dict[str, Any] | None:
    """`measure` every case of a finished sweep on the trials' kind of resource: a Ray task
    holding one GPU when the trials had GPUs, else this process. None without cases."""
    cases = sweep_cases(results, base)
    if not cases:
        return None
    from audiosweep.capacity import cluster_capacity, has_gpus

    # The trials' kind of resource: a GPU each whenever the cluster can grow GPU nodes (as
    # `train.gpus_per_worker` unset means), unless the config keeps them off GPUs.
    types = [t for t in cluster_capacity().node_types if t.max_workers > 0]
    if has_gpus(types) and base.train.gpus_per_worker != 0:
        import ray

        task = ray.remote(num_gpus=1, num_cpus=1)(measure)
        return ray.get(task.remote(cases, num_classes, device="cuda"))
    return measure(cases, num_classes)


def to_run(measurement: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of the parent run."""
    metrics = {
        f"{METRIC_PREFIX}{arch}/{conv}/{ks}x{kc}/{name}": value
        for (arch, conv, ks, kc), row in measurement["cases"].items()
        for name, value in row.items()
        if not math.isnan(value)
    }
    tags = {f"{TAG_PREFIX}{k}": str(v) for k, v in measurement["setup"].items()}
    return metrics, tags


def from_run(metrics: dict[str, float], tags: dict[str, str]) -> dict[str, Any] | None:
    """The measurement back from a parent run's metrics and tags; None if it has none."""
    cases: dict[CaseKey, dict[str, float]] = {}
    for name, value in metrics.items():
        parts = name[len(METRIC_PREFIX) :].split("/") if name.startswith(METRIC_PREFIX) else []
        if len(parts) != 4 or parts[3] not in FIGURES:
            continue
        size, _, count = parts[2].partition("x")
        cases.setdefault((parts[0], parts[1], int(size), int(count)), {})[parts[3]] = value
    if not cases:
        return None
    setup = {k[len(TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
    return {"setup": setup, "cases": cases}


def attach(rows: list[dict[str, Any]], measurement: dict[str, Any] | None) -> None:
    """Give each report row its case's controlled figures (NaN where there are none)."""
    cases = (measurement or {}).get("cases", {})
    for row in rows:
        key = (row["arch"], row["conv"], row["kernel_size"], row["kernel_count"])
        figures = cases.get(key, {})
        for name in FIGURES:
            row[name] = figures.get(name, math.nan)


def method_text(measurement: dict[str, Any] | None) -> str:
    """How the report's throughput figures were measured, in one paragraph."""
    if not measurement:
        return (
            "Throughput: no controlled measurement on this sweep's parent run (a sweep from "
            "before it existed, or one whose measurement failed): not reported."
        )
    s = measurement["setup"]
    threads = s.get("threads", "?")
    where = (
        f"on the CPU, {threads} thread{'s' * (str(threads) != '1')}"
        if s.get("device") == "cpu"
        else f"on one {s.get('device')} GPU"
    )
    text = (
        f"Throughput (samples/s): measured once the trials were done, every case's model side "
        f"by side in one process {where}, input {s.get('input_shape')} ({s.get('dtype')}; "
        f"the preset's {s.get('clip_seconds')} s clips), {s.get('repeats')} interleaved "
        "repeats, medians; inference is an eval forward, a training step forward + loss + "
        "backward. × DSC: the median over repeats of the per-repeat speed ratio to the same "
        f"architecture's DSC model. DCLS positions {s.get('positions', POSITIONS)}."
    )
    if s.get("clock") == "thread":
        text += (
            " Times are the measuring thread's CPU time (one thread computes every op): what "
            "a batch costs an idle core, which other processes delay but do not add to."
        )
    if float(s.get("min_sample_s") or 0) > 0:
        text += f" Each timing ran batches back to back for at least {s['min_sample_s']} s."
    if s.get("skipped"):
        text += f" Not measured (another input shape): {s['skipped']}."
    return text
