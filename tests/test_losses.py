"""Losses against closed-form values."""

from __future__ import annotations

import math

import pytest
import torch

from audiosweep.train.losses import build_loss


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


LOGITS = [[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]]
TARGETS = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def _p_t(x: float, y: float) -> float:
    p = _sigmoid(x)
    return p if y == 1.0 else 1.0 - p


def test_bce_closed_form():
    expected = (
        sum(
            -math.log(_p_t(x, y))
            for row, ys in zip(LOGITS, TARGETS, strict=True)
            for x, y in zip(row, ys, strict=True)
        )
        / 6
    )
    loss = build_loss("bce")(torch.tensor(LOGITS), torch.tensor(TARGETS))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_sigmoid_focal_closed_form(gamma):
    terms = [
        -((1 - _p_t(x, y)) ** gamma) * math.log(_p_t(x, y))
        for row, ys in zip(LOGITS, TARGETS, strict=True)
        for x, y in zip(row, ys, strict=True)
    ]
    loss = build_loss("focal", gamma=gamma)
    assert loss(torch.tensor(LOGITS), torch.tensor(TARGETS)).item() == pytest.approx(
        sum(terms) / 6, rel=1e-6
    )
    summed = build_loss("focal", gamma=gamma, reduction="sum")
    assert summed(torch.tensor(LOGITS), torch.tensor(TARGETS)).item() == pytest.approx(
        sum(terms), rel=1e-6
    )


def test_focal_default_is_gamma_one_and_gamma_zero_is_bce():
    x, y = torch.tensor(LOGITS), torch.tensor(TARGETS)
    assert build_loss("focal").gamma == 1.0
    assert build_loss("focal_softmax").gamma == 1.0
    torch.testing.assert_close(build_loss("focal", gamma=0.0)(x, y), build_loss("bce")(x, y))


def test_softmax_focal_closed_form_matches_report_definition():
    logits = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
    labels = [0, 1]
    expected = []
    for row, c in zip(logits, labels, strict=True):
        p_t = math.exp(row[c]) / sum(math.exp(v) for v in row)
        expected.append(-(1 - p_t) * math.log(p_t))  # gamma = 1
    loss = build_loss("focal_softmax")
    by_index = loss(torch.tensor(logits), torch.tensor(labels))
    by_onehot = loss(torch.tensor(logits), torch.eye(3)[labels])
    assert by_index.item() == pytest.approx(sum(expected) / 2, rel=1e-6)
    torch.testing.assert_close(by_index, by_onehot)
    per_sample = build_loss("focal_softmax", reduction="none")(
        torch.tensor(logits), torch.tensor(labels)
    )
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-6)


def test_softmax_focal_gamma_zero_is_cross_entropy():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(
        build_loss("focal_softmax", gamma=0.0)(logits, labels), build_loss("ce")(logits, labels)
    )


def test_unknown_loss_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="reduction"):
        build_loss("focal", reduction="max")
    with pytest.raises(ValueError, match="must match"):
        build_loss("focal")(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="integer"):
        build_loss("focal_softmax")(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


def test_losses_backpropagate():
    logits = torch.randn(4, 5, requires_grad=True)
    targets = (torch.rand(4, 5) < 0.3).float()
    for name in ("bce", "focal"):
        logits.grad = None
        build_loss(name)(logits, targets).backward()
        assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
