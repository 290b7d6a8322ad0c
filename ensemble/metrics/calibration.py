"""Temperature scaling (Guo, Pleiss, Sun and Weinberger 2017, "On calibration of modern neural networks",
ICML, section 4.2): one scalar T > 0 divides every logit, fitted by minimising the log loss on held-out
rows. Dividing all logits of a row by the same positive T keeps their order, so the arg-max (and every
metric of it: accuracy, macro-F1, the arg-max book) never changes; only the confidence does.

NumPy functions on (N, 3) arrays, so trees, nets and blends can all use them, and ``calibrate_logits`` for
the nets' (B, 3) logit tensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
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


def keep_argmax(probs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, C) probabilities whose row arg-max is exactly ``reference`` (N,) class ids.

    Scaling by 1/T keeps the order of a row's logits in exact arithmetic, but floating point can round two
    close probabilities to one value (T > 1 pulls them together), and ``argmax`` then picks the first. A class
    that ties with (or, after rounding, passes) the reference's is lowered to the next float below it: a
    change of one unit in the last place, in the rare rows where it happens, so the arg-max, the predictions
    and macro-F1 stay bit-identical to the uncalibrated ones.
    """
    probs = np.asarray(probs)
    rows = np.flatnonzero(probs.argmax(axis=1) != reference)
    if rows.size == 0:
        return probs
    probs = probs.copy()
    top = probs[rows, reference[rows]]
    for j in range(probs.shape[1]):  # C columns, not rows: vectorised over the flipped rows
        clash = (reference[rows] != j) & (probs[rows, j] >= top)
        probs[rows[clash], j] = np.nextafter(top[clash], probs.dtype.type(0))
    return probs


def calibrate_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) probabilities -> (N, C) ``softmax(log p / T)`` in ``probs``' float dtype (float64 at least
    while computing), with every row's arg-max that of ``probs`` (``keep_argmax``). T = 1 returns ``probs``
    unchanged, bit for bit.

    Raises:
        CalibrationInputError: as ``apply_temperature``.
    """
    probs = np.asarray(probs)
    if temperature == 1.0:
        return probs
    dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
    out = apply_temperature(probs, temperature).astype(dtype)
    return keep_argmax(out, probs.argmax(axis=1))


def calibrate_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, C) logits -> (B, C) float32 ``softmax(logits / T)``, each row's arg-max that of the uncalibrated
    ``softmax(logits)`` (what a run without calibration predicts), made so as ``keep_argmax`` does.
    T = 1 returns exactly the uncalibrated probabilities."""
    probs = logits.float().softmax(dim=-1)
    if temperature == 1.0:
        return probs
    scaled = (logits.float() / temperature).softmax(dim=-1)
    reference = probs.argmax(dim=-1)
    flipped = scaled.argmax(dim=-1) != reference
    if bool(flipped.any()):
        rows = flipped.nonzero().squeeze(1)
        ref = reference[rows]
        top = scaled[rows, ref]
        for j in range(scaled.shape[1]):
            clash = (ref != j) & (scaled[rows, j] >= top)
            scaled[rows[clash], j] = torch.nextafter(top[clash], torch.zeros_like(top[clash]))
    return scaled


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability table: for each of ``n_bins`` equal-width confidence bins of (0, 1], the mean
    confidence (max probability), the accuracy (share of rows whose arg-max is the label) and the row count.

    Binning as torchmetrics' ``MulticlassCalibrationError`` (Guo et al. 2017, section 2), so
    ``sum(count * |conf - acc|) / N`` is the suite's ``ece``. Empty bins hold NaN.

    Returns:
        (conf, acc, count), each (n_bins,).
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf, hit = probs.max(axis=1), (probs.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        acc = np.bincount(which, weights=hit, minlength=n_bins) / count
    return mean_conf, acc, count.astype(np.int64)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE (Guo et al. 2017, eq. 3) from ``reliability_bins``; 0 for no rows."""
    conf, acc, count = reliability_bins(probs, y, n_bins)
    used = count > 0
    return float((count[used] * np.abs(conf[used] - acc[used])).sum() / max(count.sum(), 1))


def checked_temperature(value: object, source: str) -> float:
    """``value`` as a float T, checked finite and > 0 (None: 1.0, an uncalibrated model).

    Raises:
        CalibrationInputError: anything else, naming ``source`` (the checkpoint or export it came from).
    """
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CalibrationInputError(f"{source}: calibration temperature must be a finite number > 0, got {value!r}")
    return float(value)
