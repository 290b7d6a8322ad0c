"""Ways to combine member probabilities. ``fit`` sees validation data only, by signature.

Shapes: member probabilities are ``(M, N, 3)`` (members, rows, short/flat/long), labels ``(N,)`` class
ids in {0, 1, 2}; every ``predict_proba`` returns ``(N, 3)``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ensemble.data.constants import NUM_CLASSES

_EPS = 1e-7


def check_member_probs(probs: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Raise ``ValueError`` (one line) unless ``probs`` is (M, N, 3) finite and ``labels`` is (N,) in 0..2."""
    if probs.ndim != 3 or probs.shape[2] != 3 or probs.shape[0] < 1 or probs.shape[1] < 1:
        raise ValueError(f"member probabilities must be (members, rows, 3), got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("member probabilities hold a non-finite value")
    if labels is not None:
        if labels.shape != (probs.shape[1],):
            raise ValueError(f"labels must be ({probs.shape[1]},) to match the probabilities, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > 2):
            raise ValueError(f"labels must be class ids 0..2, got values in [{labels.min()}, {labels.max()}]")


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log probability of the true class, in nats; probabilities clipped at 1e-7.

    (N, 3), (N,) -> float. The same clip as ``ensemble.metrics`` uses, so numbers agree with metrics.json.
    """
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0)).mean())


class MeanBlend:
    """Soft voting: the mean of the members' class probabilities."""

    name = "mean"

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> MeanBlend:
        check_member_probs(val_probs, val_labels)
        self.weights_ = np.full(val_probs.shape[0], 1.0 / val_probs.shape[0])
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:  # (M, N, 3) -> (N, 3)
        check_member_probs(probs)
        if probs.shape[0] != len(self.weights_):
            raise ValueError(f"fitted on {len(self.weights_)} members, got {probs.shape[0]}")
        return np.tensordot(self.weights_, probs, axes=1)


class WeightedBlend(MeanBlend):
    """Convex weights over members (w >= 0, sum w = 1) that minimise the validation log loss.

    The loss ``-mean log(sum_m w_m p_m[y])`` is convex in w (minus the log of a linear function), so a
    solver that works on the simplex itself finds the global optimum: SciPy's SLSQP with the equality
    constraint and [0, 1] bounds, given the exact gradient ``-mean(p_m[y] / q)``. A softmax
    re-parametrisation with Powell (the former solver) can stall on a face of the simplex.
    """

    name = "weighted"

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> WeightedBlend:
        check_member_probs(val_probs, val_labels)
        m = val_probs.shape[0]
        own = val_probs[:, np.arange(len(val_labels)), val_labels].T.astype(np.float64)  # (N, M) p_m[y]

        def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            q = own @ w
            clipped = np.maximum(q, _EPS)
            # below the clip the loss is flat in w; its gradient there is zero
            grad = -(own / clipped[:, None] * (q > _EPS)[:, None]).mean(axis=0)
            return float(-np.log(np.minimum(clipped, 1.0)).mean()), grad

        result = minimize(loss_and_grad, np.full(m, 1.0 / m), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(m)}],
                          options={"maxiter": 1000, "ftol": 1e-12})
        if not result.success:
            raise RuntimeError(f"weighted blend: SLSQP did not converge ({result.message})")
        w = np.clip(result.x, 0.0, None)  # SLSQP may end a hair outside its bounds
        self.weights_ = w / w.sum()
        return self


class StackedBlend:
    """A multinomial logistic regression (scikit-learn, L2 with strength ``1/C``) on the members'
    validation log-probabilities, features ordered member by member: (N, 3M)."""

    name = "stacked"

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    @staticmethod
    def features(probs: np.ndarray) -> np.ndarray:
        """(M, N, 3) -> (N, 3M): log of the clipped probabilities, member 0's three classes first."""
        return np.log(np.clip(probs, _EPS, 1.0)).transpose(1, 0, 2).reshape(probs.shape[1], -1)

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> StackedBlend:
        from sklearn.linear_model import LogisticRegression

        check_member_probs(val_probs, val_labels)
        # sklearn's default tol=1e-4 lets lbfgs stop ~0.01 away (in probability) from the optimum
        self.model_ = LogisticRegression(C=self.C, max_iter=5000, tol=1e-8).fit(self.features(val_probs), val_labels)
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        """(M, N, 3) -> (N, 3); a class absent from the val labels gets probability 0."""
        check_member_probs(probs)
        out = np.zeros((probs.shape[1], NUM_CLASSES))
        out[:, self.model_.classes_] = self.model_.predict_proba(self.features(probs))
        return out


METHODS = {cls.name: cls for cls in (MeanBlend, WeightedBlend, StackedBlend)}
