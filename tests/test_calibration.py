"""Calibration: ECE and Brier score against hand-worked numbers, temperature scaling on an over-confident model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.ensembling.methods import log_loss
from ensemble.metrics import BrierScore, ClassificationMetrics
from ensemble.metrics.calibration import CalibrationInputError, apply_temperature, fit_temperature

# ECE by hand, 15 bins of width 1/15 (= .0667); top-label confidence, right or wrong:
#   .90 right, .92 right          -> bin 13 [.8667, .9333): accuracy 1,  confidence .91,  gap .09
#   .68 right, .72 wrong          -> bin 10 [.6667, .7333): accuracy .5, confidence .70,  gap .20
#   .35 wrong, .38 wrong          -> bin 5  [.3333, .4):    accuracy 0,  confidence .365, gap .365
# ECE = sum over bins of (rows in bin / 6) x gap = (.09 + .20 + .365) x 2 / 6. (With 10 bins .68 and .72
# would fall in different bins: .32 / 6 + .72 / 6 + ..., so the bin count is checked too.)
ECE_PROBS = torch.tensor([[0.90, 0.05, 0.05], [0.04, 0.92, 0.04], [0.68, 0.20, 0.12], [0.14, 0.14, 0.72],
                          [0.35, 0.33, 0.32], [0.30, 0.38, 0.32]])  # fmt: skip
ECE_TARGET = torch.tensor([0, 1, 0, 1, 2, 0])
ECE = (0.09 + 0.20 + 0.365) * 2 / 6


def test_ece_by_hand():
    metric = ClassificationMetrics()
    metric.update(ECE_PROBS[:4], ECE_TARGET[:4])  # batches accumulate
    metric.update(ECE_PROBS[4:], ECE_TARGET[4:])
    assert float(metric.compute()["ece"]) == pytest.approx(ECE, abs=1e-6)
    ten = ClassificationMetrics(n_bins=10)  # .68 and .72 in different bins: the bin count matters
    ten.update(ECE_PROBS, ECE_TARGET)
    assert float(ten.compute()["ece"]) != pytest.approx(ECE, abs=1e-3)


def test_ece_reads_a_probability_a_hair_above_one_as_a_probability():
    # torchmetrics alone would softmax this batch (any value > 1 means logits to it): confidence .58, ECE .42.
    metric = ClassificationMetrics()
    metric.update(torch.tensor([[1.0000001, 0.0, 0.0]]), torch.tensor([0]))
    assert float(metric.compute()["ece"]) == pytest.approx(0.0, abs=1e-6)


def test_brier_closed_forms():
    def brier(probs, target):
        metric = BrierScore()
        metric.update(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(target))
        return float(metric.compute())

    assert brier(np.full((5, 3), 1 / 3), [0, 1, 2, 0, 1]) == pytest.approx(2 / 3, abs=1e-7)  # (2/3)^2 + 2 (1/3)^2
    assert brier(np.eye(3), [0, 1, 2]) == 0.0  # sure and right
    assert brier(np.eye(3), [1, 2, 0]) == pytest.approx(2.0)  # sure and wrong: 1 + 1
    rng = np.random.default_rng(0)
    probs, target = rng.dirichlet(np.ones(3), 300).astype(np.float32), rng.integers(0, 3, 300)
    metric = BrierScore()
    for part in np.array_split(np.arange(300), 4):
        metric.update(torch.tensor(probs[part]), torch.tensor(target[part]))
    expected = ((probs.astype(np.float64) - np.eye(3)[target]) ** 2).sum(axis=1).mean()
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)


def _calibrated_model(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) logits and (n,) labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.0, (n, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, y


def _ece_and_f1(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    metrics = ClassificationMetrics()
    metrics.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(y))
    out = metrics.compute()
    return float(out["ece"]), float(out["f1_macro"])


def test_temperature_scaling_repairs_an_over_confident_model():
    logits, y = _calibrated_model(0, 20_000)
    over = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)  # logits x 3: over-confident
    fit, held = slice(0, 10_000), slice(10_000, None)
    t = fit_temperature(over[fit], y[fit])
    assert t == pytest.approx(3.0, rel=0.05)
    calibrated = apply_temperature(over[held], t)
    ece_before, f1_before = _ece_and_f1(over[held], y[held])
    ece_after, f1_after = _ece_and_f1(calibrated, y[held])
    assert ece_after <= ece_before / 2, (ece_before, ece_after)
    assert log_loss(calibrated, y[held]) < log_loss(over[held], y[held])
    np.testing.assert_array_equal(calibrated.argmax(axis=1), over[held].argmax(axis=1))
    assert f1_after == f1_before  # bit-identical: the arg-max did not move
    # Logits in, the same temperature out (log softmax(3z) = 3z - a per-row constant).
    assert fit_temperature(3 * logits[fit], y[fit], logits=True) == pytest.approx(t, rel=1e-6)
    np.testing.assert_allclose(apply_temperature(3 * logits[held], t, logits=True), calibrated, atol=1e-12)


def test_temperature_one_and_the_arg_max():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(3, 0.5), 500)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-12)
    for t in (0.02, 0.3, 1.7, 50.0):
        out = apply_temperature(probs, t)
        np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    # A probability of exactly 0 stays 0 rather than giving NaN.
    out = apply_temperature(np.array([[0.0, 0.3, 0.7]]), 2.0)
    assert np.isfinite(out).all() and out[0, 0] < 1e-100


@pytest.mark.parametrize(
    ("scores", "y", "message"),
    [
        (np.full(6, 0.5), np.zeros(6, int), "shape"),
        (np.array([[0.5, np.nan, 0.5]]), np.zeros(1, int), "non-finite score at row 0"),
        (np.array([[1.5, -0.5, 0.0]]), np.zeros(1, int), r"\[0, 1\]"),
        (np.full((4, 3), 1 / 3), np.array([0, 1, 3, 0]), "class ids 0..2"),
        (np.full((4, 3), 1 / 3), np.zeros(5, int), r"labels must be \(4,\)"),
    ],
)
def test_bad_input_is_one_line(scores, y, message):
    with pytest.raises(CalibrationInputError, match=message):
        fit_temperature(scores, y)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_refused(t):
    with pytest.raises(CalibrationInputError, match="temperature must be"):
        apply_temperature(np.full((2, 3), 1 / 3), t)
