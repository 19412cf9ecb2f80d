"""mAP, per-class AP, AUC and d-prime against scikit-learn and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from audiosweep.train.metrics_multilabel import (
    auc_dprime,
    average_precision,
    map_with_excluded,
    mean_average_precision,
    tagging_metrics,
)


def _random_case(seed: int, n: int = 300, c: int = 12, levels: int | None = None):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < rng.uniform(0.05, 0.5, size=c)).astype(np.int64)
    scores = rng.random((n, c)) + 0.3 * targets  # informative but imperfect
    if levels is not None:  # heavy ties
        scores = np.round(scores * levels) / levels
    return targets, scores


@pytest.mark.parametrize("levels", [None, 3, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_ap_and_auc_equal_sklearn(seed, levels):
    targets, scores = _random_case(seed, levels=levels)
    ap = average_precision(torch.from_numpy(targets), torch.from_numpy(scores))
    np.testing.assert_allclose(
        ap.numpy(), average_precision_score(targets, scores, average=None), rtol=0, atol=1e-12
    )
    result = auc_dprime(torch.from_numpy(targets), torch.from_numpy(scores).float())
    ref_auc = roc_auc_score(targets, scores.astype(np.float32), average=None)
    np.testing.assert_allclose(result["per_class_auc"].numpy(), ref_auc, atol=1e-12)
    assert result["mean_auc"] == pytest.approx(ref_auc.mean(), abs=1e-12)
    assert result["mean_dprime"] == pytest.approx(
        (math.sqrt(2) * norm.ppf(ref_auc)).mean(), abs=1e-9
    )
    assert result["dprime_of_mean_auc"] == pytest.approx(
        math.sqrt(2) * norm.ppf(ref_auc.mean()), abs=1e-9
    )
    assert result["excluded"] == 0
    assert mean_average_precision(
        torch.from_numpy(targets), torch.from_numpy(scores)
    ) == pytest.approx(average_precision_score(targets, scores, average="macro"), abs=1e-12)


def test_binary_scores_and_all_tied_scores():
    rng = np.random.default_rng(3)
    targets = (rng.random((200, 4)) < 0.3).astype(np.int64)
    scores = (rng.random((200, 4)) < 0.5).astype(np.float64)
    scores[:, 3] = 0.7  # one single threshold for the whole class
    ap = average_precision(torch.from_numpy(targets), torch.from_numpy(scores))
    np.testing.assert_allclose(ap.numpy(), average_precision_score(targets, scores, average=None))
    assert ap[3].item() == pytest.approx(targets[:, 3].mean())  # precision of "all positive"
    auc = auc_dprime(torch.from_numpy(targets), torch.from_numpy(scores))["per_class_auc"]
    np.testing.assert_allclose(auc.numpy(), roc_auc_score(targets, scores, average=None))
    assert auc[3].item() == 0.5


def test_class_without_positives_and_all_positive_class():
    targets, scores = _random_case(4, n=100, c=6, levels=5)
    targets[:, 1] = 0  # no positives: AP and AUC undefined
    targets[:, 4] = 1  # all positive: AP = 1, AUC undefined
    t, s = torch.from_numpy(targets), torch.from_numpy(scores)
    ap = average_precision(t, s)
    assert math.isnan(ap[1].item()) and ap[4].item() == 1.0
    keep = [0, 2, 3, 4, 5]
    np.testing.assert_allclose(
        ap[keep].numpy(),
        average_precision_score(targets[:, keep], scores[:, keep], average=None),
        atol=1e-12,
    )
    mean_ap, excluded = map_with_excluded(t, s)
    assert excluded == 1
    assert mean_ap == pytest.approx(
        average_precision_score(targets[:, keep], scores[:, keep], average="macro"), abs=1e-12
    )
    result = auc_dprime(t, s)
    auc = result["per_class_auc"]
    assert result["excluded"] == 2
    assert math.isnan(auc[1].item()) and math.isnan(auc[4].item())
    defined = [0, 2, 3, 5]
    ref = roc_auc_score(targets[:, defined], scores[:, defined], average=None)
    np.testing.assert_allclose(auc[defined].numpy(), ref, atol=1e-12)
    assert result["mean_auc"] == pytest.approx(ref.mean(), abs=1e-12)


def test_perfect_ranking_gives_infinite_per_class_dprime():
    targets = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]])
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.8, 0.2], [0.1, 0.7]])
    result = auc_dprime(targets, scores)
    assert result["per_class_auc"].tolist() == [1.0, 1.0]
    assert math.isinf(result["mean_dprime"]) and math.isinf(result["dprime_of_mean_auc"])


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="same shape"):
        average_precision(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="binary"):
        average_precision(torch.full((4, 2), 0.5), torch.rand(4, 2))
    bad = torch.rand(4, 2)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="row 2, class 1"):
        auc_dprime(torch.ones(4, 2), bad)


def test_bool_targets_and_single_class_vector():
    rng = np.random.default_rng(5)
    targets = rng.random(50) < 0.4
    scores = rng.random(50)
    ap = average_precision(torch.from_numpy(targets), torch.from_numpy(scores))
    assert ap.shape == (1,)
    assert ap.item() == pytest.approx(average_precision_score(targets, scores), abs=1e-12)


def test_tagging_metrics_combines_ap_and_auc_from_one_ranking():
    targets, scores = _random_case(6, n=120, c=5, levels=4)
    targets[:, 2] = 0
    t, s = torch.from_numpy(targets), torch.from_numpy(scores)
    result = tagging_metrics(t, s)
    keep = [0, 1, 3, 4]
    assert result["map"] == pytest.approx(
        average_precision_score(targets[:, keep], scores[:, keep], average="macro"), abs=1e-12
    )
    assert result["map_excluded"] == 1 and result["auc_excluded"] == 1
    np.testing.assert_allclose(
        result["per_class_auc"][keep].numpy(),
        roc_auc_score(targets[:, keep], scores[:, keep], average=None),
        atol=1e-12,
    )
    separate = auc_dprime(t, s)
    assert result["mean_dprime"] == separate["mean_dprime"]
    assert result["dprime_of_mean_auc"] == separate["dprime_of_mean_auc"]
