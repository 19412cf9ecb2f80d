"""The validation split: stratified (every class with two or more positives on both sides,
per-class shares near the fraction, closer than a random split of the same size),
deterministic from its seed, carved from a dataset without losing or repeating a row, and
`prepare ... --val-fraction`."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from audiosweep.cli import main
from audiosweep.data import DatasetError, DatasetInfo, prepare_demo, verify
from audiosweep.data.split import carve_validation, stratified_choice


def _labels(n: int, classes: int, seed: int) -> list[tuple[int, ...]]:
    """Long-tailed multi-label rows: class k is drawn with probability ~ 1 / (k + 1)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, classes + 1)
    rows = []
    for _ in range(n):
        k = rng.integers(1, 4)
        rows.append(tuple(sorted(set(rng.choice(classes, k, p=weights / weights.sum())))))
    return rows


def test_every_class_with_two_positives_lands_on_both_sides():
    rows, classes = _labels(600, 60, seed=3), 60
    mask = stratified_choice(rows, classes, 0.2, seed=0)
    val = Counter(k for row, m in zip(rows, mask, strict=True) if m for k in row)
    train = Counter(k for row, m in zip(rows, mask, strict=True) if not m for k in row)
    total = train + val
    for k in range(classes):
        if total[k] >= 2:
            assert val[k] >= 1 and train[k] >= 1, (k, total[k])
    assert abs(mask.sum() - 0.2 * len(rows)) <= 0.02 * len(rows)
    # Per-class share of positives in val: closer to 0.2 than a random split of the same size.
    common = [k for k in range(classes) if total[k] >= 10]

    def error(m):
        got = Counter(k for row, x in zip(rows, m, strict=True) if x for k in row)
        return np.mean([abs(got[k] / total[k] - 0.2) for k in common])

    random_mask = np.zeros(len(rows), bool)
    random_mask[np.random.default_rng(0).permutation(len(rows))[: mask.sum()]] = True
    assert error(mask) < error(random_mask)


def test_choice_is_deterministic_from_the_seed():
    rows = _labels(300, 30, seed=1)
    a = stratified_choice(rows, 30, 0.1, seed=5)
    assert np.array_equal(a, stratified_choice(rows, 30, 0.1, seed=5))
    assert not np.array_equal(a, stratified_choice(rows, 30, 0.1, seed=6))


def _ids(ds, split):
    return [
        clip_id
        for path in DatasetInfo.load(ds).shard_paths(split)
        for clip_id in pq.read_table(path, columns=["clip_id"]).column("clip_id").to_pylist()
    ]


def test_carve_moves_rows_without_loss_and_keeps_a_complete_dataset(tmp_path):
    ds = tmp_path / "ds"
    prepare_demo(ds, train_clips=60, eval_clips=10, clip_seconds=0.5, sample_rate=8000, seed=0)
    before = sorted(_ids(ds, "train"))
    entries = carve_validation(ds, fraction=0.25, seed=1)
    train, val = _ids(ds, "train"), _ids(ds, "val")
    assert sorted(train + val) == before and not set(train) & set(val)
    # Stratification balances labels first: the row count is near the fraction, not exact.
    assert len(val) == entries["val"]["rows"] and abs(len(val) - 15) <= 2
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["splits"]["val"]["carved_from"] == {
        "split": "train",
        "fraction": 0.25,
        "seed": 1,
    }
    assert verify(ds).ok, verify(ds).problems
    assert not (ds / ".split-staging").exists()
    with pytest.raises(DatasetError, match="already has a split 'val'; pass --overwrite"):
        carve_validation(ds, fraction=0.25)
    # Carving again puts the earlier validation rows back before choosing.
    carve_validation(ds, fraction=0.5, seed=2, overwrite=True)
    train, val = _ids(ds, "train"), _ids(ds, "val")
    assert sorted(train + val) == before and abs(len(val) - 30) <= 3


def test_prepare_with_val_fraction_and_the_split_command(tmp_path, capsys):
    ds = tmp_path / "demo"
    common = ["--train-clips", "40", "--eval-clips", "8", "--clip-seconds", "0.5"]
    common += ["--sample-rate", "8000", "--no-progress"]
    assert main(["prepare", "demo", "--out", str(ds), *common, "--val-fraction", "0.25"]) == 0
    carved = re.search(
        r"val: (\d+) clips carved from train \((\d+) left\)", capsys.readouterr().out
    )
    assert carved and int(carved[1]) + int(carved[2]) == 40 and abs(int(carved[1]) - 10) <= 2
    info = DatasetInfo.load(ds)
    assert sorted(info.splits) == ["eval", "train", "val"]
    # Preparing again over it replaces the carved split with the train split it came from.
    assert main(["prepare", "demo", "--out", str(ds), *common, "--overwrite"]) == 0
    assert sorted(DatasetInfo.load(ds).splits) == ["eval", "train"]
    assert main(["split", str(ds), "--val-fraction", "0.5", "--val-seed", "3"]) == 0
    assert abs(DatasetInfo.load(ds).rows("val") - 20) <= 3
