"""Single-label metrics against scikit-learn, and the losses and checks the task type selects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from sklearn.metrics import log_loss as sk_log_loss

from audiosweep.config import ConfigError, TrialConfig
from audiosweep.train.losses import SoftmaxFocalLoss
from audiosweep.train.metrics_singlelabel import accuracy, classification_metrics, log_loss
from audiosweep.train.task import task_for


def _one_hot(y: np.ndarray, c: int) -> torch.Tensor:
    return F.one_hot(torch.from_numpy(y), c).float()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_and_log_loss_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 257, 10
    y = rng.integers(0, c - 2, size=n)  # the last two classes never occur in this eval split
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(n, c)) * 3), dim=1)
    assert accuracy(_one_hot(y, c), probs) == pytest.approx(
        accuracy_score(y, probs.argmax(1).numpy()), abs=1e-12
    )
    expected = sk_log_loss(y, probs.numpy(), labels=list(range(c)))
    assert log_loss(_one_hot(y, c), probs) == pytest.approx(expected, rel=1e-12)
    # Class indices work as targets too.
    assert log_loss(torch.from_numpy(y), probs) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_certain_mistakes_as_scikit_learn_does() -> None:
    y = np.array([0, 1, 2, 1])
    probs = np.array(
        [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0]], dtype=np.float64
    )
    ours = log_loss(_one_hot(y, 3), torch.from_numpy(probs))
    assert ours == pytest.approx(sk_log_loss(y, probs, labels=[0, 1, 2]), rel=1e-12)
    assert math.isfinite(ours) and ours > 8  # one certain mistake costs -ln(eps) / 4


def test_chance_levels_are_the_majority_share_and_the_prior_entropy() -> None:
    y = np.array([0, 0, 0, 1, 2, 2])
    prior = np.bincount(y, minlength=4) / len(y)
    probs = torch.from_numpy(np.tile(prior, (len(y), 1)))
    m = classification_metrics(_one_hot(y, 4), probs)
    assert m["chance_accuracy"] == pytest.approx(0.5)
    # Predicting the class frequencies everywhere scores exactly the prior's entropy.
    assert m["chance_log_loss"] == pytest.approx(m["log_loss"], rel=1e-12)
    assert m["chance_log_loss"] == pytest.approx(sk_log_loss(y, probs.numpy(), labels=[0, 1, 2, 3]))


def test_targets_with_other_than_one_class_are_refused() -> None:
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="exactly one class"):
        accuracy(targets, torch.full((2, 2), 0.5))


def _cfg(task: str, loss: str) -> TrialConfig:
    return TrialConfig().with_overrides({"data.task": task, "train.loss": loss})


def test_the_task_type_selects_loss_and_activation() -> None:
    logits = torch.randn(6, 5)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    onehot = F.one_hot(y, 5).float()
    single = task_for(_cfg("singlelabel", "ce"))
    assert single.activation == "softmax"
    torch.testing.assert_close(
        single.loss(_cfg("singlelabel", "ce"))(logits, onehot), F.cross_entropy(logits, y)
    )
    focal = single.loss(_cfg("singlelabel", "focal"))
    assert isinstance(focal, SoftmaxFocalLoss) and focal.gamma == 1.0
    p = torch.softmax(logits, 1)[torch.arange(6), y]
    torch.testing.assert_close(focal(logits, onehot), (-(1 - p) * p.log()).mean())
    with pytest.raises(ConfigError, match="train.loss=ce or train.loss=focal"):
        single.loss(_cfg("singlelabel", "bce"))
    multi = task_for(_cfg("auto", "bce"))
    assert multi.name == "multilabel" and multi.activation == "sigmoid"
    assert isinstance(multi.loss(_cfg("multilabel", "bce")), torch.nn.BCEWithLogitsLoss)


def test_single_label_metrics_hold_accuracy_log_loss_and_per_class_ap() -> None:
    rng = np.random.default_rng(3)
    y = np.arange(40) % 4
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(40, 4))), 1)
    m = task_for("singlelabel").metrics(_one_hot(y, 4), probs)
    assert m["eval_accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1).numpy()))
    assert m["eval_log_loss"] == pytest.approx(sk_log_loss(y, probs.numpy()))
    assert m["per_class_ap"].shape == (4,) and 0 <= m["eval_map"] <= 1
