"""The Ray Data reader (and the plain loop): shapes, targets, resampling, padding, training use."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiosweep.data import DatasetInfo, LabelIndex, iter_numpy_batches, prepare_demo, read_split
from audiosweep.data.writer import DatasetWriter, Row

SR = 16000
LABELS = LabelIndex(("/x/a", "/x/b", "/x/c"), ("A", "B", "C"))


def _encode(wave: np.ndarray, sr: int, fmt: str = "FLAC") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def _sine(freq, sr, seconds, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory):
    """A 16 kHz, 2 s dataset whose rows are stored at 8 kHz, at 16 kHz too long, and as short WAV."""
    out = tmp_path_factory.mktemp("mixed") / "ds"
    rows = [
        Row("low-rate", _encode(_sine(300, 8000, 1.0), 8000), 8000, 8000, (0, 2)),
        Row("too-long", _encode(_sine(500, SR, 3.0), SR), SR, 3 * SR, (1,)),
        Row("short-wav", _encode(_sine(700, SR, 0.5), SR, "WAV"), SR, SR // 2, (2,)),
    ]
    with DatasetWriter(
        out, labels=LABELS, splits=["train"], sample_rate=SR, clip_seconds=2.0
    ) as writer:
        for row in rows:
            writer.split("train").add(row)
    return out


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "ds"
    prepare_demo(
        out, train_clips=20, eval_clips=6, clip_seconds=2.0, sample_rate=SR, progress=False
    )
    return out


def _expected_mixed() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    frames = 2 * SR
    t = np.arange(frames) / SR
    low = np.where(t < 1.0, 0.5 * np.sin(2 * np.pi * 300 * t), 0.0)
    long_ = 0.5 * np.sin(2 * np.pi * 500 * t)
    short = np.where(t < 0.5, 0.5 * np.sin(2 * np.pi * 700 * t), 0.0)
    return {
        "low-rate": (low, np.array([1, 0, 1], np.float32)),
        "too-long": (long_, np.array([0, 1, 0], np.float32)),
        "short-wav": (short, np.array([0, 0, 1], np.float32)),
    }


def _check_mixed(batches) -> None:
    expected = _expected_mixed()
    seen = set()
    for batch in batches:
        assert batch["waveform"].dtype == np.float32 and batch["waveform"].shape[1] == 2 * SR
        for clip_id, wave, target in zip(
            batch["clip_id"], batch["waveform"], batch["target"], strict=True
        ):
            ref_wave, ref_target = expected[clip_id]
            np.testing.assert_array_equal(target, ref_target)
            # Skip the resampling filter's transients around the 8 kHz clip's end.
            keep = np.ones(2 * SR, bool)
            keep[SR - 200 : SR + 200] = keep[:200] = False
            np.testing.assert_allclose(wave[keep], ref_wave[keep], atol=3e-3)
            seen.add(clip_id)
    assert seen == set(expected)


def test_plain_reader_resamples_pads_and_truncates(mixed_dataset):
    _check_mixed(iter_numpy_batches(mixed_dataset, "train", batch_size=2))


@pytest.mark.integration
def test_ray_reader_shapes_targets_and_torch_batches(ray_client, mixed_dataset, demo_dataset):
    ray = ray_client
    ray.data.DataContext.get_current().enable_progress_bars = False
    _check_mixed(
        read_split(mixed_dataset, "train", batch_size=2, with_clip_id=True).iter_batches(
            batch_size=2, batch_format="numpy"
        )
    )

    # Torch batches, truncated to 1.5 s and through a waveform transform, in shard order.
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    try:
        ds = read_split(
            demo_dataset,
            "train",
            clip_seconds=1.5,
            batch_size=4,
            waveform_transform=lambda x: 0.5 * x,
        )
    finally:
        ctx.execution_options.preserve_order = False
    info = DatasetInfo.load(demo_dataset)
    table = pq.read_table(info.shard_paths("train")[0])
    ref_waves = np.stack(
        [
            sf.read(io.BytesIO(a), dtype="float32")[0][: int(1.5 * SR)]
            for a in table.column("audio").to_pylist()
        ]
    )
    ref_targets = np.zeros((table.num_rows, info.num_classes), np.float32)
    for i, labels in enumerate(table.column("labels").to_pylist()):
        ref_targets[i, labels] = 1.0
    batches = list(ds.iter_torch_batches(batch_size=8))
    assert [tuple(b["waveform"].shape) for b in batches] == [(8, 24000), (8, 24000), (4, 24000)]
    assert set(batches[0]) == {"waveform", "target"}
    waves = np.concatenate([b["waveform"].numpy() for b in batches])
    targets = np.concatenate([b["target"].numpy() for b in batches])
    np.testing.assert_allclose(waves, 0.5 * ref_waves, atol=1e-7)
    np.testing.assert_array_equal(targets, ref_targets)
    assert targets.sum(axis=0).tolist() == info.positives("train")

    # A seeded shuffle is a repeatable permutation.
    def order(seed):
        ds = read_split(demo_dataset, "train", shuffle=True, seed=seed, with_clip_id=True)
        return [
            c for b in ds.iter_batches(batch_size=32, batch_format="numpy") for c in b["clip_id"]
        ]

    first, again = order(5), order(5)
    assert first == again
    assert sorted(first) == table.column("clip_id").to_pylist() != first


@pytest.mark.integration
def test_planned_read_decodes_in_the_read_task_and_streams_batch_sized_blocks(
    ray_client, demo_dataset
):
    ray_client.data.DataContext.get_current().enable_progress_bars = False
    ds = read_split(demo_dataset, "train", batch_size=4, epoch=0, seed=3, mix_rows=32)
    rows = [b["waveform"].shape[0] for b in ds.iter_batches(batch_size=None)]
    stats = ds.stats()
    # One fused task reads and decodes: compressed audio never goes through the object store.
    assert "ReadPlannedParquet->MapBatches(_decode_batch)" in stats
    assert "ReadPlannedParquet:" not in stats
    # The 20 rows of one read task handed over in blocks of about one batch (4 rows), not in
    # one block at the task's end.
    assert sum(rows) == 20
    assert len(rows) >= 5 and max(rows) <= 8


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_train_workers_with_fractional_cpus_read_their_shards(ray_client, demo_dataset, tmp_path):
    """Two Train workers holding 0.5 CPU each on the 2-CPU cluster: Data still runs, no hang."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray_client.data.DataContext.get_current().enable_progress_bars = False
    out_dir = tmp_path / "counts"
    out_dir.mkdir()

    def loop(config):
        import ray.train

        shard = ray.train.get_dataset_shard("train")
        clips, positives, shapes = 0, 0.0, set()
        for batch in shard.iter_torch_batches(batch_size=4):
            shapes.add((tuple(batch["waveform"].shape[1:]), tuple(batch["target"].shape[1:])))
            clips += len(batch["target"])
            positives += float(batch["target"].sum())
        rank = ray.train.get_context().get_world_rank()
        with open(f"{config['out']}/{rank}.json", "w") as f:
            json.dump({"clips": clips, "positives": positives, "shapes": sorted(shapes)}, f)

    TorchTrainer(
        loop,
        train_loop_config={"out": str(out_dir)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        datasets={"train": read_split(demo_dataset, "train", batch_size=4)},
        run_config=RunConfig(storage_path=str(tmp_path / "runs"), name="reader-shards"),
    ).fit()
    counts = [json.loads((out_dir / f"{rank}.json").read_text()) for rank in (0, 1)]
    info = DatasetInfo.load(demo_dataset)
    assert sum(c["clips"] for c in counts) == info.rows("train")
    assert all(c["clips"] > 0 for c in counts)
    assert sum(c["positives"] for c in counts) == sum(info.positives("train"))
    assert all(c["shapes"] == [[[2 * SR], [info.num_classes]]] for c in counts)
