"""A dataset split as a Ray Data pipeline: read shards -> decode/resample/pad -> augment."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .decode import decode_rows
from .epoch_clock import EpochClock
from .execution_callbacks import with_execution_callbacks
from .row_groups import scan_row_groups
from .sampling import check_sampling, class_weights, is_drawn, rows_per_epoch
from .schema import DatasetError, DatasetInfo

if TYPE_CHECKING:
    import ray.data
    import torch


# Ray 2.60's default Parquet reader (datasource V2) lists every execution through a pool of
# footer-reading actors (32 by default); measured here, that start-up cost about 1.5-2 s per
# pass on 2 cores. The V1 reader (still supported, ``DataContext.use_datasource_v2``) reads
# the few shard footers in the driver and splits each shard into batch-sized blocks, so
# decoding spreads over the cores from the first batch.
@contextmanager
def _v1_parquet_reader() -> Iterator[None]:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = saved


def _decode_batch(
    batch: dict[str, np.ndarray],
    *,
    sample_rate: int,
    frames: int,
    num_classes: int,
    waveform_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    with_clip_id: bool,
) -> dict[str, np.ndarray]:
    waveform, target = decode_rows(
        batch["audio"],
        batch["sample_rate"],
        batch["labels"],
        sample_rate=sample_rate,
        frames=frames,
        num_classes=num_classes,
    )
    if waveform_transform is not None:
        import torch

        with torch.no_grad():
            out = waveform_transform(torch.from_numpy(waveform))
        waveform = out.detach().cpu().numpy().astype(np.float32, copy=False)
    result = {"waveform": waveform, "target": target}
    if with_clip_id:
        result["clip_id"] = batch["clip_id"]
    return result


def read_split(
    dataset_dir: str | os.PathLike,
    split: str,
    *,
    clip_seconds: float | None = None,
    waveform_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    with_clip_id: bool = False,
    read_cpus: float = 1.0,
    epoch: int | EpochClock | None = None,
    sampling: str = "uniform",
    samples_per_epoch: int | None = None,
    mix_rows: int = 256,
) -> ray.data.Dataset:
    """Read ``<split>`` of a dataset as fixed-length float32 waveforms and multi-hot targets.

    Columns: ``waveform`` float32 ``(L,)`` with ``L = clip_seconds * sample_rate`` (zero
    padded or truncated; ``clip_seconds`` defaults to the manifest's), ``target`` float32
    ``(num_classes,)``, and ``clip_id`` (string) when ``with_clip_id``; string columns
    cannot become tensors, so leave it off for ``iter_torch_batches``.
    ``waveform_transform`` maps the ``(B, L)`` batch tensor after padding (waveform
    augmentation). ``shuffle`` shuffles the file order and then the rows (before decoding,
    on compressed audio); ``seed`` fixes both. ``read_cpus`` is the CPU each read/decode task
    reserves: below 1 on small machines, where Train workers hold fractions of the cores and a
    task asking for a whole CPU would wait forever.

    ``epoch`` (an int, or an :class:`EpochClock` that training workers set before each pass)
    makes every execution read that epoch's plan (:mod:`.sampling`): row groups in an order
    permuted per (``seed``, epoch), each read task's ``mix_rows`` rows in one random order,
    and with ``sampling="balanced"`` or ``samples_per_epoch`` a fixed number of draws with
    replacement.
    Without ``epoch``, rows come in file order (or ``shuffle``'s global shuffle).
    """
    import ray.data
    from ray.data import FileShuffleConfig

    info = DatasetInfo.load(dataset_dir)
    paths = [str(p) for p in info.shard_paths(split)]
    if not paths:
        raise DatasetError(f"{info.path}: split {split!r} has no rows")
    columns = ["audio", "sample_rate", "labels"] + (["clip_id"] if with_clip_id else [])
    check_sampling(sampling, samples_per_epoch)
    if epoch is not None:
        ds = _read_planned(
            info,
            split,
            columns,
            seed,
            epoch,
            sampling,
            samples_per_epoch,
            batch_size,
            read_cpus,
            mix_rows,
        )
        # Each read task emits batch-sized blocks: decoding them whole (no re-batching) lets
        # Ray fuse read and decode into one task, so compressed audio never passes through
        # the object store.
        ds = _decoded(ds, info, clip_seconds, waveform_transform, with_clip_id, None, read_cpus)
        # A fused task would otherwise gather its decoded batches into blocks of up to 128 MiB
        # (Ray's default) and hand over nothing before its last row is decoded. Ray emits a
        # block once its buffer holds more than this many bytes: one decoded batch does.
        row_bytes = _decoded_row_bytes(info, clip_seconds)
        ds.context.target_max_block_size = (batch_size - 1) * row_bytes + 1
        return with_execution_callbacks(ds)
    if is_drawn(sampling, samples_per_epoch):
        raise ValueError("sampled reads draw per epoch: pass epoch= (an int or an EpochClock)")
    with _v1_parquet_reader():
        ds = ray.data.read_parquet(
            paths,
            columns=columns,
            partitioning=None,
            shuffle=FileShuffleConfig(seed=seed) if shuffle else None,
            override_num_blocks=max(1, math.ceil(info.rows(split) / batch_size)),
            num_cpus=read_cpus,
        )
    if shuffle:
        ds = ds.random_shuffle(seed=seed)
    ds = _decoded(ds, info, clip_seconds, waveform_transform, with_clip_id, batch_size, read_cpus)
    return with_execution_callbacks(ds)


def _read_planned(
    info: DatasetInfo,
    split: str,
    columns: list[str],
    seed: int | None,
    epoch: int | EpochClock,
    sampling: str,
    samples_per_epoch: int | None,
    batch_size: int,
    read_cpus: float,
    mix_rows: int,
) -> ray.data.Dataset:
    import ray.data

    from .planned_source import PlannedParquetDatasource

    weights = class_weights(info.positives(split)) if sampling == "balanced" else None
    groups = scan_row_groups(info.shard_paths(split), weights, read_cpus=read_cpus)
    if groups.class_counts is not None and groups.class_counts.tolist() != info.positives(split):
        raise DatasetError(
            f"{info.path}: the {split} shards' labels do not match the manifest's "
            "positives_per_class; run `audiosweep verify` on this dataset"
        )
    samples = None
    if is_drawn(sampling, samples_per_epoch):
        samples = rows_per_epoch(info.rows(split), sampling, samples_per_epoch)
    source = PlannedParquetDatasource(
        groups,
        columns=columns,
        seed=seed or 0,
        epoch=epoch,
        samples=samples,
        class_weights=weights,
        mix_rows=mix_rows,
        block_rows=batch_size,
    )
    # Ray splits the output of a read that returns fewer tasks than the blocks it asked for,
    # and never fuses a split read with the decode after it: ask for as many as mixing makes.
    return ray.data.read_datasource(
        source, override_num_blocks=source.read_tasks, num_cpus=read_cpus
    )


def _decoded_row_bytes(info: DatasetInfo, clip_seconds: float | None) -> int:
    """Bytes of one decoded row: float32 waveform and multi-hot target."""
    return 4 * (info.clip_frames(clip_seconds) + info.num_classes)


def _decoded(
    ds: ray.data.Dataset,
    info: DatasetInfo,
    clip_seconds: float | None,
    waveform_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    with_clip_id: bool,
    batch_size: int | None,
    read_cpus: float,
) -> ray.data.Dataset:
    fn_kwargs: dict[str, Any] = {
        "sample_rate": info.sample_rate,
        "frames": info.clip_frames(clip_seconds),
        "num_classes": info.num_classes,
        "waveform_transform": waveform_transform,
        "with_clip_id": with_clip_id,
    }
    return ds.map_batches(
        _decode_batch,
        batch_size=batch_size,
        batch_format="numpy",
        fn_kwargs=fn_kwargs,
        num_cpus=read_cpus,
    )
