"""Ways to combine member probabilities. ``fit`` sees validation data only, by signature."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import softmax

_EPS = 1e-7


def _log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0)).mean())


class MeanBlend:
    """Soft voting: the mean of the members' class probabilities."""

    name = "mean"

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> MeanBlend:  # (M, N, 3), (N,) in 0..2
        self.weights_ = np.full(val_probs.shape[0], 1.0 / val_probs.shape[0])
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:  # (M, N, 3) -> (N, 3)
        return np.tensordot(self.weights_, probs, axes=1)


class WeightedBlend(MeanBlend):
    """Convex weights over members that minimise the validation log loss."""

    name = "weighted"

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> WeightedBlend:
        def loss(logits: np.ndarray) -> float:
            return _log_loss(np.tensordot(softmax(logits), val_probs, axes=1), val_labels)

        start = np.zeros(val_probs.shape[0])
        result = minimize(loss, start, method="Nelder-Mead" if len(start) <= 2 else "Powell",
                          options={"maxiter": 4000})
        self.weights_ = softmax(result.x)
        return self


class StackedBlend:
    """A multinomial logistic regression on the members' validation log-probabilities."""

    name = "stacked"

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    @staticmethod
    def _features(probs: np.ndarray) -> np.ndarray:  # (M, N, 3) -> (N, 3M)
        return np.log(np.clip(probs, _EPS, 1.0)).transpose(1, 0, 2).reshape(probs.shape[1], -1)

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> StackedBlend:
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(self._features(val_probs), val_labels)
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        out = np.zeros((probs.shape[1], 3))
        out[:, self.model_.classes_] = self.model_.predict_proba(self._features(probs))
        return out


METHODS = {cls.name: cls for cls in (MeanBlend, WeightedBlend, StackedBlend)}
