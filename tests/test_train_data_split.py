"""A single Ray Train worker reads its datasets itself: every row, in order, and no split
coordinator actor (a process of its own per dataset) is started for it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from audiosweep.train.data_split import ExactEvalDataConfig
from conftest import count_actors


def _loop(config):
    ids, kinds = {}, {}
    for name in ("train", "eval"):
        shard = ray.train.get_dataset_shard(name)
        kinds[name] = type(shard).__name__
        ids[name] = [
            int(i) for b in shard.iter_batches(batch_size=3, batch_format="numpy") for i in b["id"]
        ]
    directory = tempfile.mkdtemp()  # Result.metrics comes with a checkpoint
    Path(directory, "done").write_text("1")
    ray.train.report(
        {"ids": ids, "kinds": kinds}, checkpoint=ray.train.Checkpoint.from_directory(directory)
    )


def _slow_when_odd(batch):
    import time

    # Odd blocks finish later: only the ingest options' preserve_order keeps the row order.
    time.sleep(0.2 * (int(batch["id"][0]) % 2))
    return batch


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_one_worker_reads_every_row_in_order_without_a_split_coordinator(
    ray_client, ray_address, tmp_path
):
    train = ray.data.range(24, override_num_blocks=8).map_batches(_slow_when_odd, batch_size=None)
    eval_ = ray.data.range(7, override_num_blocks=7).map_batches(_slow_when_odd, batch_size=None)
    before = count_actors(ray_address, "SplitCoordinator")
    result = TorchTrainer(
        _loop,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="one-worker", storage_path=str(tmp_path)),
        datasets={"train": train, "eval": eval_},
        dataset_config=ExactEvalDataConfig(),
    ).fit()
    assert result.metrics["ids"] == {"train": list(range(24)), "eval": list(range(7))}
    assert set(result.metrics["kinds"].values()) == {"DataIteratorImpl"}
    assert count_actors(ray_address, "SplitCoordinator") == before


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_the_trainer_shares_its_epoch_clock_only_between_several_workers(
    ray_client, smoke_dataset, tmp_path, workers
):
    """One worker plans its train split in its own process (above), so its clock is a value
    there; several workers' split coordinator reads a shared one (an actor)."""
    from audiosweep.config import load_preset
    from audiosweep.train.checks import resolve_trial
    from audiosweep.train.trainer import build_trainer

    cfg = load_preset("smoke").with_overrides(
        [f"data.path={smoke_dataset}", f"train.num_workers={workers}"]
    )
    cfg, _ = resolve_trial(cfg)
    trainer = build_trainer(cfg, run_root=str(tmp_path), name=f"clock-{workers}")
    assert trainer.train_loop_config["epoch_clock"].shared is (workers > 1)
