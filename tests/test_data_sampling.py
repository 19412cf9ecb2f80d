"""Per-epoch plans: balanced draws (PaSST weights), fresh orders per (seed, epoch), and the Ray
Data reader that executes them.

The statistical tests run the datasource's own read tasks in this process (a `ReadTask` is a
plain callable over real Parquet files), for hundreds of epochs; the Ray tests check that Ray
Data, split across consumers, yields exactly those draws.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from math import comb

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from scipy import stats

from audiosweep.data import DatasetInfo, LabelIndex, class_weights, read_split
from audiosweep.data.planned_source import PlannedParquetDatasource
from audiosweep.data.row_groups import row_weights, scan_row_groups
from audiosweep.data.sampling import plan_epoch
from audiosweep.data.writer import DatasetWriter, Row
from conftest import count_actors

SR = 8000
# Rows per primary class, written sorted by class (the worst case for a file-order reader).
PRIMARY = [96, 64, 32, 16, 16, 16, 8, 8]
CLASSES = len(PRIMARY)
LABELS = LabelIndex(
    tuple(f"/m/{c}" for c in range(CLASSES)), tuple(f"class {c}" for c in range(CLASSES))
)
GROUP_ROWS = 16


def _labels(row: int, primary: int) -> tuple[int, ...]:
    # Every 5th row also carries the next class: multi-label rows sum their classes' weights.
    return (primary, (primary + 1) % CLASSES) if row % 5 == 0 else (primary,)


@pytest.fixture(scope="module")
def sorted_dataset(tmp_path_factory):
    """256 clips of 0.05 s sorted by class, 16-row groups, several shards."""
    out = tmp_path_factory.mktemp("sampling") / "ds"
    rng = np.random.default_rng(0)
    with DatasetWriter(
        out,
        labels=LABELS,
        splits=["train"],
        sample_rate=SR,
        clip_seconds=0.05,
        shard_mb=0.03,
        row_group_rows=GROUP_ROWS,
    ) as writer:
        row = 0
        for primary, count in enumerate(PRIMARY):
            for _ in range(count):
                wave = (0.1 * rng.standard_normal(int(0.05 * SR))).astype(np.float32)
                buf = io.BytesIO()
                sf.write(buf, wave, SR, format="FLAC", subtype="PCM_16")
                audio = buf.getvalue()
                writer.split("train").add(
                    Row(f"clip{row:03d}", audio, SR, len(wave), _labels(row, primary))
                )
                row += 1
    return out


def _truth(dataset) -> tuple[list[str], list[tuple[int, ...]]]:
    ids, labels = [], []
    for primary, count in enumerate(PRIMARY):
        for _ in range(count):
            ids.append(f"clip{len(ids):03d}")
            labels.append(_labels(len(labels), primary))
    return ids, labels


def _source(
    dataset, *, balanced: bool, samples: int | None, seed: int = 7, epoch=0, mix_rows: int = 256
):
    info = DatasetInfo.load(dataset)
    weights = class_weights(info.positives("train")) if balanced else None
    groups = scan_row_groups(info.shard_paths("train"), weights)
    return PlannedParquetDatasource(
        groups,
        columns=["clip_id", "labels"],
        seed=seed,
        epoch=epoch,
        samples=samples,
        class_weights=weights,
        mix_rows=mix_rows,
    )


def _run_tasks(source, parallelism: int) -> list[str]:
    """Clip ids of one epoch, in plan order: the read tasks run here, one after another."""
    ids: list[str] = []
    for task in source.get_read_tasks(parallelism):
        for block in task():
            ids.extend(block.column("clip_id").to_pylist())
    return ids


def test_passt_class_and_row_weights():
    np.testing.assert_allclose(class_weights([0, 100, 900]), [10.0, 5.0, 1.0])
    cw = np.array([1.0, 10.0, 100.0])
    labels = pa.array([[0], [1, 2], [], [2, 0, 1]], type=pa.list_(pa.int16()))
    np.testing.assert_allclose(row_weights(labels, cw), [1.0, 110.0, 0.0, 111.0])
    np.testing.assert_allclose(row_weights(labels.slice(1, 2), cw), [110.0, 0.0])


def test_manifest_positives_are_the_counts_weights_use(sorted_dataset):
    info = DatasetInfo.load(sorted_dataset)
    _, labels = _truth(sorted_dataset)
    counts = np.bincount([c for row in labels for c in row], minlength=CLASSES)
    assert info.positives("train") == counts.tolist()
    assert len(info.shard_paths("train")) > 1


def test_balanced_draw_frequencies_match_passt_weights(sorted_dataset):
    """Over 300 epochs of 256 draws, per-clip counts fit P(r) = w_r / sum(w) (chi-square) and
    each class's draw count lies within 5 sigma of its binomial expectation."""
    ids, labels = _truth(sorted_dataset)
    n_c = np.bincount([c for row in labels for c in row], minlength=CLASSES)
    w = np.array([sum(1000.0 / (n_c[c] + 100.0) for c in row) for row in labels])
    p = w / w.sum()
    epochs, samples = 300, 256
    source = _source(sorted_dataset, balanced=True, samples=samples)
    counts: Counter[str] = Counter()
    for epoch in range(epochs):
        source._epoch = epoch
        drawn = _run_tasks(source, parallelism=4)
        assert len(drawn) == samples
        counts.update(drawn)
    total = epochs * samples
    observed = np.array([counts[i] for i in ids])
    assert observed.sum() == total
    assert stats.chisquare(observed, total * p).pvalue > 1e-3

    member = np.array([[c in row for c in range(CLASSES)] for row in labels])
    q = p @ member  # probability that one draw carries class c
    drawn_per_class = observed @ member
    sigma = np.sqrt(total * q * (1 - q))
    assert np.all(np.abs(drawn_per_class - total * q) < 5 * sigma), (drawn_per_class, total * q)


def test_rare_classes_drawn_more_than_under_uniform(sorted_dataset):
    ids, labels = _truth(sorted_dataset)
    member = np.array([[c in row for c in range(CLASSES)] for row in labels])
    index = {clip: i for i, clip in enumerate(ids)}

    epochs, samples = 80, 256

    def class_frequency(balanced: bool) -> np.ndarray:
        source = _source(sorted_dataset, balanced=balanced, samples=samples)
        drawn = Counter()
        for epoch in range(epochs):
            source._epoch = epoch
            drawn.update(_run_tasks(source, parallelism=2))
        counts = np.zeros(len(ids))
        for clip, n in drawn.items():
            counts[index[clip]] = n
        return (counts @ member) / counts.sum()

    uniform, balanced = class_frequency(False), class_frequency(True)
    # Standard error of the difference of two class frequencies, each from this many draws.
    f = (uniform + balanced) / 2
    sigma = np.sqrt(2 * f * (1 - f) / (epochs * samples))
    rarest = int(np.argmin(member.sum(0)))
    assert balanced[rarest] > uniform[rarest] + 5 * sigma[rarest], (balanced, uniform)
    assert balanced[0] < uniform[0] - 5 * sigma[0]  # the most frequent class gives way
    # With the offset of 100 and classes of 10-115 clips the balance is partial, not flat.
    assert balanced.max() / balanced.min() < uniform.max() / uniform.min()


def test_full_pass_is_a_fresh_permutation_per_epoch(sorted_dataset):
    ids, _ = _truth(sorted_dataset)
    source = _source(sorted_dataset, balanced=False, samples=None)
    orders = []
    for epoch in (0, 1, 0):
        source._epoch = epoch
        orders.append(_run_tasks(source, parallelism=5))
    assert sorted(orders[0]) == sorted(orders[1]) == ids  # every clip exactly once
    assert orders[0] == orders[2]  # same (seed, epoch), same order
    assert orders[0] != orders[1] and orders[0] != ids
    other_seed = _source(sorted_dataset, balanced=False, samples=None, seed=8)
    assert _run_tasks(other_seed, parallelism=5) != orders[0]


def test_draws_do_not_depend_on_how_tasks_split_the_plan(sorted_dataset):
    source = _source(sorted_dataset, balanced=True, samples=300, epoch=3, mix_rows=32)
    one, many = _run_tasks(source, 1), _run_tasks(source, 7)
    assert Counter(one) == Counter(many) and len(one) == 300
    assert _run_tasks(source, 7) == many  # the same split reads the same order
    assert len(source.get_read_tasks(7)) == 7
    # Ray may ask for more tasks than mixing allows: each task still mixes mix_rows rows.
    assert len(_source(sorted_dataset, balanced=True, samples=300).get_read_tasks(7)) == 2
    plan = plan_epoch(source._groups, seed=7, epoch=3, samples=300)
    assert plan.rows == 300 and plan.drawn


def test_file_order_reads_refuse_sampling_without_epoch(sorted_dataset):
    with pytest.raises(ValueError, match="epoch"):
        read_split(sorted_dataset, "train", sampling="balanced")
    with pytest.raises(ValueError, match="sampling"):
        read_split(sorted_dataset, "train", sampling="weighted", epoch=0)


def test_config_keys_default_to_uniform_and_are_checked():
    from audiosweep.config import ConfigError, TrialConfig

    cfg = TrialConfig()
    assert (cfg.data.sampling, cfg.data.samples_per_epoch) == ("uniform", None)
    cfg = cfg.with_overrides(["data.sampling=balanced", "data.samples_per_epoch=100000"])
    assert (cfg.data.sampling, cfg.data.samples_per_epoch) == ("balanced", 100000)
    with pytest.raises(ConfigError, match="data.sampling"):
        cfg.with_overrides(["data.sampling=weighted"])
    with pytest.raises(ConfigError, match="data.samples_per_epoch"):
        cfg.with_overrides(["data.samples_per_epoch=0"])


# --- through Ray Data ----------------------------------------------------------------------


def _split_ids(ds, n: int) -> list[list[str]]:
    """Clip ids each of ``n`` streaming-split consumers reads (consumed concurrently)."""
    out: list[list[str]] = [[] for _ in range(n)]

    def consume(i, it):
        for batch in it.iter_batches(batch_size=16, batch_format="numpy"):
            out[i].extend(str(c) for c in batch["clip_id"])

    threads = [
        threading.Thread(target=consume, args=(i, it))
        for i, it in enumerate(ds.streaming_split(n, equal=False))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return out


@pytest.mark.integration
def test_ray_reader_draws_the_plan_for_any_worker_count_and_mixes_sorted_data(
    ray_client, sorted_dataset
):
    ray_client.data.DataContext.get_current().enable_progress_bars = False
    expected = Counter(_run_tasks(_source(sorted_dataset, balanced=True, samples=200, epoch=3), 3))

    def read(**kw):
        return read_split(
            sorted_dataset,
            "train",
            seed=7,
            sampling="balanced",
            samples_per_epoch=200,
            with_clip_id=True,
            **kw,
        )

    one = _split_ids(read(epoch=3, batch_size=8), 1)
    three = _split_ids(read(epoch=3, batch_size=32), 3)
    assert Counter(one[0]) == expected
    assert Counter(c for part in three for c in part) == expected
    assert all(three), "every consumer got some draws"
    assert Counter(_split_ids(read(epoch=4), 1)[0]) != expected

    # Data sorted by class, read in a fixed order (preserve_order) through a one-batch local
    # shuffle buffer: file order gives batches of about two classes, the per-epoch plan batches
    # close to uniformly random ones.
    ids, labels = _truth(sorted_dataset)
    primary_of = {clip: row[0] for clip, row in zip(ids, labels, strict=True)}
    n, batch = len(ids), 32
    # Expected classes in a uniformly random batch: sum over classes of P(class present).
    random_batch = sum(1 - comb(n - k, batch) / comb(n, batch) for k in PRIMARY)

    def classes_per_batch(**kw) -> float:
        ctx = ray_client.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        try:
            ds = read_split(sorted_dataset, "train", with_clip_id=True, **kw)
            batches = list(
                ds.iter_batches(
                    batch_size=batch,
                    batch_format="numpy",
                    local_shuffle_buffer_size=batch,
                    local_shuffle_seed=0,
                    drop_last=True,
                )
            )
        finally:
            ctx.execution_options.preserve_order = False
        return float(np.mean([len({primary_of[str(c)] for c in b["clip_id"]}) for b in batches]))

    file_order = classes_per_batch()
    planned = [classes_per_batch(seed=7, epoch=e) for e in (0, 1)]
    assert file_order < 0.5 * random_batch, (file_order, random_batch)
    assert min(planned) > 0.75 * random_batch, (planned, random_batch)


def _epoch_order_loop(config):
    """Train worker: set the clock, read the epoch through the training loop's `iterate`."""
    import json

    import ray.train
    import torch

    from audiosweep.train.worker_data import iterate

    rank = ray.train.get_context().get_world_rank()
    shard = ray.train.get_dataset_shard("train")
    clock = config["clock"]
    seen = {}
    for epoch in range(2):
        clock.set(epoch)
        seen[epoch] = [
            c
            for b in iterate(shard, 16, torch.device("cpu"), drop_last=False)
            for c in b["clip_id"]
        ]
    with open(f"{config['out']}/{rank}.json", "w") as f:
        json.dump(seen, f)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_train_workers_read_each_epochs_plan(ray_client, sorted_dataset, tmp_path):
    """Two Ray Train workers (get_dataset_shard, as train/loop.py): each epoch's draws are the
    plan of (seed, epoch) set through the epoch clock, split between the workers."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from audiosweep.data import EpochClock

    ray_client.data.DataContext.get_current().enable_progress_bars = False
    clock = EpochClock.new()
    out = tmp_path / "seen"
    out.mkdir()
    kw = {"seed": 7, "sampling": "balanced", "samples_per_epoch": 128, "with_clip_id": True}
    TorchTrainer(
        _epoch_order_loop,
        train_loop_config={"clock": clock, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        datasets={"train": read_split(sorted_dataset, "train", epoch=clock, **kw)},
        run_config=RunConfig(storage_path=str(tmp_path / "runs"), name="epoch-order"),
    ).fit()
    seen = [json.loads((out / f"{rank}.json").read_text()) for rank in (0, 1)]
    for epoch in (0, 1):
        source = _source(sorted_dataset, balanced=True, samples=128, epoch=epoch)
        expected = Counter(_run_tasks(source, 2))
        parts = [s[str(epoch)] for s in seen]
        assert len(parts[0]) == len(parts[1]) == 64  # the default split is equal
        assert Counter(parts[0] + parts[1]) == expected
    assert Counter(seen[0]["0"] + seen[1]["0"]) != Counter(seen[0]["1"] + seen[1]["1"])


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_one_worker_reads_each_epochs_plan_from_an_unshared_clock(
    ray_client, ray_address, sorted_dataset, tmp_path
):
    """One Ray Train worker with the trainer's data config plans its train split itself, so an
    unshared clock (no actor) gives it each epoch's plan of (seed, epoch)."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from audiosweep.data import EpochClock
    from audiosweep.train.data_split import ExactEvalDataConfig

    ray_client.data.DataContext.get_current().enable_progress_bars = False
    clock = EpochClock.new(shared=False)
    out = tmp_path / "seen"
    out.mkdir()
    kw = {"seed": 7, "sampling": "balanced", "samples_per_epoch": 128, "with_clip_id": True}
    before = count_actors(ray_address, "_Clock")
    TorchTrainer(
        _epoch_order_loop,
        train_loop_config={"clock": clock, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        datasets={"train": read_split(sorted_dataset, "train", epoch=clock, **kw)},
        dataset_config=ExactEvalDataConfig(),
        run_config=RunConfig(storage_path=str(tmp_path / "runs"), name="epoch-order-one"),
    ).fit()
    seen = json.loads((out / "0.json").read_text())
    for epoch in (0, 1):  # 128 draws make one read task: the plan's order, row for row
        source = _source(sorted_dataset, balanced=True, samples=128, epoch=epoch)
        assert seen[str(epoch)] == _run_tasks(source, 1)
    assert Counter(seen["0"]) != Counter(seen["1"])
    assert count_actors(ray_address, "_Clock") == before


def test_an_unshared_clock_never_set_in_the_planning_process_names_the_fix(sorted_dataset):
    from audiosweep.data import EpochClock

    clock = EpochClock.new(shared=False)
    source = _source(sorted_dataset, balanced=False, samples=None, epoch=clock)
    assert source.resolve_epoch(None) == 0  # Ray's metadata probes, before any epoch
    with pytest.raises(RuntimeError, match=r"never set in the process.*shared=True"):
        source.get_read_tasks(1, data_context=object())
    clock.set(3)
    assert source.resolve_epoch(object()) == 3


def test_sampling_ablation_space_crosses_sampling_with_dsc_and_dcls():
    from audiosweep.config import TrialConfig
    from audiosweep.sweep.spaces import load_space

    variants = load_space("ablation_sampling").variants(TrialConfig())
    arms = {(v.case, v.overrides["data.sampling"]) for v in variants}
    assert arms == {
        (f"convnext_tiny/{conv}", sampling)
        for conv in ("dsc", "dcls_gauss")
        for sampling in ("uniform", "balanced")
    }


def test_oversampled_groups_are_cut_into_slices_spread_over_the_epoch(sorted_dataset):
    source = _source(sorted_dataset, balanced=False, samples=None, seed=7)
    groups = source._groups
    samples = 5 * int(groups.rows.sum())
    plan = plan_epoch(groups, seed=7, epoch=0, samples=samples)
    assert plan.rows == samples
    # No slice holds more draws than its group has rows, so a group's repeats are not read
    # back to back but wherever the epoch's permutation puts each slice.
    assert (plan.draws <= groups.rows[plan.groups]).all()
    assert len(plan.groups) >= 5 * len(groups)
    back_to_back = (plan.groups[1:] == plan.groups[:-1]).mean()
    assert back_to_back < 3 / len(groups)


def _groups_per_block(source) -> list[int]:
    """How many row groups (16 consecutive clips each) the rows of each emitted block span."""
    spans = []
    for task in source.get_read_tasks(64):
        for block in task():
            clips = {int(c[len("clip") :]) for c in block.column("clip_id").to_pylist()}
            spans.append(len({c // GROUP_ROWS for c in clips}))
    return spans


def test_read_tasks_mix_many_row_groups_into_each_block(sorted_dataset):
    """A draw lands in its row group's slice of the plan; emitted group by group, a batch
    would hold a few neighbouring clips, each drawn several times. A task emits its mix_rows
    rows in one random order, in blocks of block_rows."""
    samples = 512
    unmixed = _groups_per_block(
        _source(sorted_dataset, balanced=False, samples=samples, mix_rows=GROUP_ROWS)
    )
    mixed = _groups_per_block(_source(sorted_dataset, balanced=False, samples=samples))
    # A task of about one group's slice: a block spans that group and a neighbour or two.
    assert np.mean(unmixed) < 3, unmixed
    # 32 rows drawn at random from all 16 groups would span 14 on average (16 (1 - (15/16)^32));
    # a task's 256 rows hold about half the epoch's slices.
    assert np.mean(mixed) > 10, mixed
