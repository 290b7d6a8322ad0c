"""Blend methods against independent references: an exponentiated-gradient solver and a 0.02 grid
for the weighted blend, a hand-fitted scikit-learn model for the stack, hand-worked numbers for the mean."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ensemble.ensembling.methods import MeanBlend, StackedBlend, WeightedBlend, log_loss


def _case(seed: int, members: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of mixed skill and calibration: (M, N, 3) probabilities and (N,) labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    out = []
    for _ in range(members):
        skill, sharp = rng.uniform(0, 0.7), rng.uniform(0.3, 3)
        noise = rng.dirichlet(np.full(3, sharp), size=rows)
        out.append(skill * np.eye(3)[y] + (1 - skill) * noise)
    return np.stack(out), y


def _exponentiated_gradient(probs: np.ndarray, y: np.ndarray, steps: int = 20_000, lr: float = 0.5) -> np.ndarray:
    """Mirror descent on the simplex (Kivinen & Warmuth 1997): w <- w * exp(-lr * grad), renormalised."""
    own = probs[:, np.arange(len(y)), y].T  # (N, M)
    w = np.full(probs.shape[0], 1.0 / probs.shape[0])
    for _ in range(steps):
        grad = -(own / (own @ w)[:, None]).mean(axis=0)
        w = w * np.exp(-lr * (grad - grad.min()))  # shifting the gradient leaves the update unchanged
        w /= w.sum()
    return w


@pytest.mark.parametrize("seed", range(8))
def test_weighted_blend_matches_an_independent_simplex_optimiser(seed):
    members = 2 + seed % 4
    probs, y = _case(seed, members, rows=120 + 40 * seed)
    fitted = WeightedBlend().fit(probs, y)
    w = fitted.weights_
    assert w.shape == (members,) and (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    ours = log_loss(fitted.predict_proba(probs), y)
    reference = log_loss(np.tensordot(_exponentiated_gradient(probs, y), probs, axes=1), y)
    assert ours <= reference + 1e-7, (ours, reference)
    assert ours == pytest.approx(reference, abs=1e-5)  # both reach the (convex) optimum
    assert ours <= min(log_loss(p, y) for p in probs) + 1e-12  # every single member is a feasible point


@pytest.mark.parametrize("seed", range(4))
def test_weighted_blend_is_no_worse_than_a_grid(seed):
    probs, y = _case(100 + seed, 3, rows=300)
    steps = np.linspace(0, 1, 51)
    grid = min(log_loss(np.tensordot(np.array([a, b, 1 - a - b]), probs, axes=1), y)
               for a in steps for b in steps if a + b <= 1 + 1e-12)
    assert log_loss(WeightedBlend().fit(probs, y).predict_proba(probs), y) <= grid + 1e-9


def test_mean_blend_by_hand():
    probs = np.array([[[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], [[0.4, 0.5, 0.1], [0.0, 0.4, 0.6]]])
    out = MeanBlend().fit(probs, np.array([2, 0])).predict_proba(probs)
    np.testing.assert_allclose(out, [[0.3, 0.4, 0.3], [0.3, 0.3, 0.4]])
    # log loss by hand: -(ln 0.3 + ln 0.3) / 2
    assert log_loss(out, np.array([2, 0])) == pytest.approx(-np.log(0.3))


def test_stacked_blend_is_the_logistic_regression_fitted_by_hand():
    probs, y = _case(7, 3, rows=400)
    new, _ = _case(8, 3, rows=50)
    features = np.hstack([np.log(np.clip(p, 1e-7, 1.0)) for p in probs])  # member 0's 3 columns first
    np.testing.assert_array_equal(StackedBlend.features(probs), features)  # documented order: coefficients read by it
    reference = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(features, y)
    stacked = StackedBlend(C=0.5).fit(probs, y)
    new_features = np.hstack([np.log(np.clip(p, 1e-7, 1.0)) for p in new])
    np.testing.assert_allclose(stacked.predict_proba(new), reference.predict_proba(new_features), atol=1e-4)


def test_stacked_blend_gives_a_class_missing_from_val_zero_probability():
    probs, y = _case(3, 2, rows=200)
    keep = y != 1  # no "flat" label in val
    out = StackedBlend().fit(probs[:, keep], y[keep]).predict_proba(probs)
    assert (out[:, 1] == 0).all() and np.allclose(out.sum(axis=1), 1.0)


@pytest.mark.parametrize("method", [MeanBlend, WeightedBlend, StackedBlend])
@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.full((2, 4, 2), 0.5), np.zeros(4, int), r"\(members, rows, 3\)"),
        (np.full((2, 4, 3), np.nan), np.zeros(4, int), "non-finite"),
        (np.full((2, 4, 3), 1 / 3), np.zeros(5, int), r"labels must be \(4,\)"),
        (np.full((2, 4, 3), 1 / 3), np.array([0, 1, 2, 3]), "class ids 0..2"),
    ],
)
def test_bad_input_is_one_clear_error(method, probs, labels, message):
    with pytest.raises(ValueError, match=message):
        method().fit(probs, labels)


def test_predicting_with_another_number_of_members_is_refused():
    probs, y = _case(1, 3, rows=60)
    with pytest.raises(ValueError, match="fitted on 3 members, got 2"):
        WeightedBlend().fit(probs, y).predict_proba(probs[:2])
