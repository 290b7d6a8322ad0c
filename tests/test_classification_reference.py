"""The suite's one ``ClassificationMetrics`` gives torchmetrics' own numbers, metric for metric, on random
batches with absent classes, never-predicted classes, ties, confidences on the calibration bins' edges and
probabilities a hair above 1; and scikit-learn's for balanced accuracy, log loss and Brier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, log_loss
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from ensemble.metrics.classification import CLASS_NAMES, ClassificationMetrics

EDGES = [k / 15 for k in range(16)]  # every calibration bin's edge, and exactly 1


def torchmetrics_reference(probs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    out = {"accuracy": MulticlassAccuracy(3, average="micro")(probs, target),
           "f1_macro": MulticlassF1Score(3, average="macro")(probs, target),
           "ece": MulticlassCalibrationError(3, n_bins=15, norm="l1")(probs.clamp(0, 1), target)}  # fmt: skip
    for kind, metric in (("precision", MulticlassPrecision), ("recall", MulticlassRecall), ("f1", MulticlassF1Score)):
        for name, value in zip(CLASS_NAMES, metric(3, average=None)(probs, target), strict=True):
            out[f"{kind}_{name}"] = value
    return {k: float(v) for k, v in out.items()}


@st.composite
def batches(draw):
    n = draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(3, draw(st.sampled_from([0.3, 1.0, 5.0]))), n)
    on_edge = rng.random(n) < draw(st.sampled_from([0.0, 0.3]))  # top-label confidence exactly on a bin edge
    top = rng.choice(EDGES[6:], n)  # >= 0.4: stays the arg-max
    rest = (1 - top)[:, None] * rng.dirichlet(np.ones(2), n)
    probs[on_edge] = np.column_stack([top, rest])[on_edge]
    if draw(st.booleans()):
        probs[rng.random(n) < 0.2] = [1 / 3, 1 / 3, 1 / 3]  # three-way ties: the first class wins
    probs = probs[:, rng.permutation(3)] if draw(st.booleans()) else probs
    high = rng.random(n) < 0.1
    probs[high] = np.nextafter(np.float32(1), np.float32(2)) * np.eye(3)[rng.integers(0, 3, high.sum())]
    classes = draw(st.sampled_from([[0, 1, 2], [0, 2], [1]]))  # some classes never true
    target = rng.choice(classes, n)
    return torch.tensor(probs, dtype=torch.float32), torch.tensor(target), draw(st.integers(1, 3))


@settings(max_examples=150, deadline=None)
@given(batches())
def test_every_metric_matches_torchmetrics_and_sklearn(batch):
    probs, target, parts = batch
    ours = ClassificationMetrics()
    for part in np.array_split(np.arange(len(target)), parts):  # several updates accumulate
        ours.update(probs[part], target[part])
    got = {k: float(v) for k, v in ours.compute().items()}
    assert set(got) == set(ours.names) and len(ours.names) == 3 + 3 * 3 + 3
    with warnings.catch_warnings():  # torchmetrics and scikit-learn warn of the absent classes under test
        warnings.simplefilter("ignore")
        reference = torchmetrics_reference(probs, target)
        balanced = balanced_accuracy_score(target.numpy(), probs.argmax(1).numpy())
    assert {k: got[k] for k in reference} == pytest.approx(reference, abs=1e-6)
    p = probs.double().clamp(0, 1).numpy()
    y = target.numpy()
    assert got["balanced_accuracy"] == pytest.approx(balanced, abs=1e-6)
    clipped = np.clip(p[np.arange(len(y)), y], 1e-7, 1)
    assert got["log_loss"] == pytest.approx(float(-np.log(clipped).mean()), abs=1e-6)
    assert got["brier"] == pytest.approx(float(((p - np.eye(3)[y]) ** 2).sum(1).mean()), abs=1e-6)


def test_log_loss_matches_sklearn_on_proper_probabilities():
    rng = np.random.default_rng(3)
    probs, target = rng.dirichlet(np.ones(3), 500), rng.integers(0, 3, 500)
    ours = ClassificationMetrics()
    ours.update(torch.tensor(probs), torch.tensor(target))
    assert float(ours.compute()["log_loss"]) == pytest.approx(log_loss(target, probs, labels=[0, 1, 2]), rel=1e-6)


def test_no_rows_give_zero_for_every_metric_and_a_reset_forgets():
    ours = ClassificationMetrics()
    assert all(float(v) == 0.0 for v in ours.compute().values())
    ours.update(torch.tensor([[0.1, 0.2, 0.7]]), torch.tensor([2]))
    assert float(ours.compute()["accuracy"]) == 1.0
    ours.reset()
    assert all(float(v) == 0.0 for v in ours.compute().values())
