"""Every eval clip is counted exactly once across 2 real Ray Train workers (gloo), with an
eval set whose size is not divisible by the number of workers."""

import tempfile
from pathlib import Path

import pytest
import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from audiosweep.train.data_split import ExactEvalDataConfig


def _loop(config):
    import torch

    from audiosweep.train.worker_data import gather_rows, gather_strings

    shard = ray.train.get_dataset_shard("eval")
    ids, values = [], []
    for batch in shard.iter_batches(batch_size=4, batch_format="numpy"):
        ids.extend(str(i) for i in batch["id"])
        values.append(torch.as_tensor(batch["id"], dtype=torch.float32).unsqueeze(1))
    local = torch.cat(values) if values else torch.zeros(0, 1)
    all_values = gather_rows(local)
    all_ids = gather_strings(ids)
    checkpoint = None
    if ray.train.get_context().get_world_rank() == 0:  # Result.metrics comes with a checkpoint
        directory = tempfile.mkdtemp()
        Path(directory, "done").write_text("1")
        checkpoint = ray.train.Checkpoint.from_directory(directory)
    ray.train.report(
        {
            "local_rows": len(ids),
            "ids": sorted(int(i) for i in all_ids),
            "values": sorted(int(v) for v in all_values.squeeze(1).tolist()),
        },
        checkpoint=checkpoint,
    )


@pytest.mark.integration
def test_eval_rows_counted_once_with_two_workers(ray_client, tmp_path):
    n = 23  # odd: an equal split would have to drop or pad a row
    eval_ds = ray.data.from_items([{"id": i} for i in range(n)])
    train_ds = ray.data.from_items([{"id": i} for i in range(8)])
    trainer = TorchTrainer(
        _loop,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="gather", storage_path=str(tmp_path)),
        datasets={"train": train_ds, "eval": eval_ds},
        dataset_config=ExactEvalDataConfig(),
    )
    result = trainer.fit()
    assert result.metrics["ids"] == list(range(n))
    assert result.metrics["values"] == list(range(n))
    assert 0 < result.metrics["local_rows"] < n  # rank 0 saw only its part
