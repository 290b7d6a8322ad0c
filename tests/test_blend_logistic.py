"""The stacked blend's solver reaches scikit-learn's optimum, cold or warm-started with another fit's Hessian."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ensemble.ensembling.logistic import design, fit_multinomial, predict_multinomial


def _problem(seed: int, n: int, p: int, sharp: float) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features (as members' log-probabilities are) and labels drawn from a softmax of them."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    x = base + 0.3 * rng.normal(size=(n, p)) - 1.1  # far from centred, like log-probabilities
    z = sharp * (x[:, :3] - x[:, :3].mean(axis=1, keepdims=True))
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    return x, y


@pytest.mark.parametrize(("seed", "sharp"), [(0, 0.3), (1, 3.0), (2, 12.0)])
@pytest.mark.parametrize("C", [0.01, 1.0, 1e4])
def test_cold_fit_equals_scikit_learn(seed, sharp, C):
    x, y = _problem(seed, 3000, 9, sharp)
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=200).fit(x, y)
    fit = fit_multinomial(design(x), y, C)
    np.testing.assert_allclose(fit.coef, reference.coef_, atol=1e-6 * max(1.0, np.abs(reference.coef_).max()))
    np.testing.assert_allclose(fit.intercept, reference.intercept_, atol=1e-5 * max(1.0, np.abs(fit.intercept).max()))
    assert abs(fit.intercept.sum()) < 1e-9  # scikit-learn's symmetric intercepts
    # both stop on a gradient tolerance; at C = 1e4 on near-separable rows the optimum is flat, so 1e-6
    np.testing.assert_allclose(predict_multinomial(design(x), fit.theta), reference.predict_proba(x), atol=1e-6)


def test_warm_start_with_another_folds_hessian_reaches_the_same_optimum():
    x, y = _problem(4, 4000, 9, 1.0)
    xt = design(x)
    earlier = fit_multinomial(xt[:, :1500], y[:1500], 0.1)  # a previous fold: fewer rows, another C
    warm = fit_multinomial(xt, y, 10.0, start=earlier.theta, hessian=earlier.hessian)
    cold = fit_multinomial(xt, y, 10.0)
    np.testing.assert_allclose(warm.theta, cold.theta, atol=1e-6)
    assert warm.n_iter <= cold.n_iter


def test_a_converged_start_takes_no_step():
    x, y = _problem(5, 1000, 6, 1.0)
    first = fit_multinomial(design(x), y, 1.0)
    again = fit_multinomial(design(x), y, 1.0, start=first.theta, hessian=first.hessian)
    assert again.n_iter == 0
    np.testing.assert_allclose(again.theta, first.theta, rtol=0, atol=1e-14)  # the intercepts re-centred only


def test_int8_labels_fit_as_int64_ones():
    """oof.parquet stores labels as int8: the solver's flat index y * n must not overflow in that type."""
    x, y = _problem(6, 500, 6, 1.0)
    wide, narrow = fit_multinomial(design(x), y, 0.01), fit_multinomial(design(x), y.astype(np.int8), 0.01)
    np.testing.assert_array_equal(wide.theta, narrow.theta)
