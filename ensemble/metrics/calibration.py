"""Temperature scaling (Guo, Pleiss, Sun and Weinberger 2017, "On calibration of modern neural networks",
ICML, section 4.2): one scalar T > 0 divides every logit, fitted by minimising the log loss on held-out
rows. Dividing all logits of a row by the same positive T keeps their order, so the arg-max (and every
metric of it: accuracy, macro-F1, the arg-max book) never changes; only the confidence does.

Pure NumPy functions on (N, 3) arrays, so trees, nets and blends can all use them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from ensemble.errors import EnsembleError

T_BOUNDS = (0.01, 100.0)  # a fitted T at either end means the scores carry (almost) no usable confidence


class CalibrationInputError(EnsembleError):
    """Scores, labels or a temperature that temperature scaling cannot use; the message says which."""


def _logits(scores: np.ndarray, logits: bool) -> np.ndarray:
    """(N, C) float64 logits: the scores themselves, or log p (p clipped at the smallest normal double, so a
    probability of exactly 0 stays ~0 after scaling instead of giving NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise CalibrationInputError(f"temperature scaling needs (rows, classes) scores, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        row = int(np.argwhere(~np.isfinite(scores))[0, 0])
        raise CalibrationInputError(f"temperature scaling: non-finite score at row {row}")
    if logits:
        return scores
    if (scores < 0).any() or (scores > 1).any():
        raise CalibrationInputError("temperature scaling: probabilities must lie in [0, 1] "
                                    "(pass logits=True for logits)")
    return np.log(np.maximum(scores, np.finfo(np.float64).tiny))


def fit_temperature(scores: np.ndarray, y: np.ndarray, logits: bool = False) -> float:
    """The temperature T minimising the mean negative log-likelihood of ``softmax(z / T)`` on these rows.

    Args:
        scores: (N, C) class probabilities (rows summing to 1), or logits with ``logits=True``; z = log p
            for probabilities (softmax(log p) = p, so T = 1 returns them unchanged).
        y: (N,) true class ids in 0..C-1.
        logits: whether ``scores`` are logits.

    Returns:
        T in ``T_BOUNDS``; T > 1 softens over-confident scores, T < 1 sharpens under-confident ones.

    The NLL is convex in 1/T (a log-sum-exp of functions linear in 1/T minus a linear one), hence unimodal
    in log T: SciPy's bounded Brent search (``minimize_scalar(method="bounded")``) on log T finds the
    global minimum inside the bounds.

    Raises:
        CalibrationInputError: bad shapes, non-finite scores, probabilities outside [0, 1], labels out of
            range or no rows.
    """
    z = _logits(scores, logits)
    y = np.asarray(y)
    if y.shape != (len(z),) or len(z) == 0:
        raise CalibrationInputError(f"temperature scaling: labels must be ({len(z)},) and non-empty, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
        raise CalibrationInputError(f"temperature scaling: labels must be class ids 0..{z.shape[1] - 1}")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / math.exp(log_t), axis=1)[rows, y].mean())

    lo, hi = (math.log(b) for b in T_BOUNDS)
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    if not result.success:
        raise RuntimeError(f"temperature scaling: the bounded search did not converge ({result.message})")
    return float(math.exp(result.x))


def apply_temperature(scores: np.ndarray, temperature: float, logits: bool = False) -> np.ndarray:
    """(N, C) -> (N, C) float64 calibrated probabilities ``softmax(z / T)``, z = log p (or the logits).

    The arg-max of every row is unchanged (a positive T keeps the order of a row's logits); T = 1 returns
    the probabilities themselves (up to rounding).

    Raises:
        CalibrationInputError: T not a finite positive number, or scores as ``fit_temperature``.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise CalibrationInputError(f"temperature must be a finite number > 0, got {temperature!r}")
    return softmax(_logits(scores, logits) / temperature, axis=1)
