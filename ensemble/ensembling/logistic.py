"""Multinomial logistic regression with an L2 penalty, fitted by Newton steps that reuse a Hessian: the stacked
blend's solver, fast enough to fit it for every C of a grid on every walk-forward fold.

The objective is scikit-learn's ``LogisticRegression(C=C)`` (multinomial, intercept not penalised; see
``sklearn/linear_model/_logistic.py``: ``l2_reg_strength = 1 / (C * n)``):

    f(W, b) = (1 / n) sum_i -log softmax(X_i W^T + b)[y_i] + (1 / (2 C n)) ||W||_F^2,

so a fit here and scikit-learn's reach the same optimum (the one-line objective is convex and, for C < inf,
strictly convex in W). What differs is the cost. scikit-learn's ``newton-cholesky`` forms the full Hessian (six
(p+1) x (p+1) sandwich products over all rows for three classes) at every step, which is ~80% of its time; a grid
of C on expanding folds repeats that for every (C, fold). Here the Hessian is a *preconditioner*: computed once,
at the first fit, and reused across the C grid and the folds (the data part is a mean over rows, so one computed on
earlier folds' rows approximates a later fold's; the penalty part, ``1/(C n)`` on W, is added exactly for each C).
Each step costs a gradient (two (n, p+1) x (p+1, 3) products); a backtracking (Armijo) line search keeps every
step a descent, and the Hessian is recomputed at the current point whenever a step shrinks the gradient by less
than 4x, which makes the end of every fit plain Newton (Nocedal and Wright 2006, "Numerical Optimization",
sections 3.1 and 3.5: Newton with a line search; a fixed positive-definite matrix as the step's metric).
Convergence: max |gradient| <= ``tol``, scikit-learn's first criterion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import softmax

from ensemble.errors import EnsembleError

REFRESH = 0.25  # a step that leaves more than this share of max |gradient| recomputes the Hessian


class SolverError(EnsembleError):
    """The Newton iteration did not reach its tolerance; the message says after how many steps."""


def design(features: np.ndarray) -> np.ndarray:
    """(n, p) features -> (p + 1, n) float64 design matrix, transposed (row-major per feature: the K-class
    arithmetic below runs on contiguous rows), its last row ones for the intercepts."""
    out = np.ones((features.shape[1] + 1, len(features)))
    out[:-1] = np.asarray(features, np.float64).T
    return out


def data_hessian(xt: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The mean negative log-likelihood's Hessian at ``theta`` ((K, p+1)), for the transposed design ``xt``
    ((p+1, n)): (K(p+1), K(p+1)), class-major.

    Block (k, l) = X^T diag(p_k (delta_kl - p_l)) X / n, each computed once and mirrored (K(K+1)/2 products).
    (A Hessian on a strided 16k-row subsample was tried: its ~1% error slowed the steps to a linear rate of ~0.1,
    costing more gradients than it saved.)
    """
    q, n = xt.shape
    k = theta.shape[0]
    prob = softmax(theta @ xt, axis=0)
    out = np.empty((k * q, k * q))
    for a in range(k):
        for b in range(a, k):
            block = (xt * (prob[a] * ((a == b) - prob[b]))) @ xt.T / n
            out[a * q:(a + 1) * q, b * q:(b + 1) * q] = block
            out[b * q:(b + 1) * q, a * q:(a + 1) * q] = block.T
    return out


@dataclass
class MultinomialFit:
    """A fitted model: ``coef`` (K, p), ``intercept`` (K,) summing to 0 (scikit-learn's symmetric convention),
    ``n_iter`` Newton-type steps taken, the Hessian it used and ``data`` (the mean negative log-likelihood and its
    gradient at the solution, without the penalty), for the next fit to start from."""

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    hessian: np.ndarray | None  # None when the start was already converged and none was given
    data: tuple[float, np.ndarray]

    @property
    def theta(self) -> np.ndarray:
        """(K, p + 1): the coefficients with the intercept as the last column."""
        return np.hstack([self.coef, self.intercept[:, None]])


def _data_loss_grad(xt: np.ndarray, flat: np.ndarray, counts: np.ndarray, theta: np.ndarray,
                    work: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[float, np.ndarray]:  # fmt: skip
    """The mean negative log-likelihood at ``theta`` and its gradient (K, p+1); ``flat`` = y * n + row, the true
    classes' places in the (K, n) logits; ``counts`` = onehot(y)^T X (K, p+1), the labels' part of the gradient;
    ``work`` = (K, n), (K, n) and (n,) float64 scratch arrays, reused by every call of a fit (fresh arrays this size
    are fresh pages: their page faults cost as much as the arithmetic)."""
    n = xt.shape[1]
    z, e, row = work
    np.matmul(theta, xt, out=z)  # (K, n): one contiguous row per class
    z -= np.max(z, axis=0, out=row)  # a per-row shift: softmax and the loss are unchanged, exp cannot overflow
    np.exp(z, out=e)
    total = np.sum(e, axis=0, out=row)
    e /= total
    loss = float(np.log(total, out=total).sum() - z.take(flat).sum()) / n
    return loss, (e @ xt.T - counts) / n


def _objective(data: tuple[float, np.ndarray], theta: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """The penalised objective and gradient from the data part: ``+ l2 / 2 ||W||^2`` and ``+ l2 W`` on the
    coefficients only (``l2`` = 1 / (C n))."""
    w = theta[:, :-1]
    grad = data[1].copy()
    grad[:, :-1] += l2 * w
    return data[0] + 0.5 * l2 * float((w * w).sum()), grad


def fit_multinomial(xt: np.ndarray, y: np.ndarray, C: float, start: np.ndarray | None = None,
                    hessian: np.ndarray | None = None, start_data: tuple[float, np.ndarray] | None = None,
                    tol: float = 1e-8, max_iter: int = 100) -> MultinomialFit:  # fmt: skip
    """Minimise scikit-learn's multinomial L2 objective (module docstring) on ``xt`` (``design``), labels ``y``.

    Args:
        xt: (p + 1, n) transposed design matrix (``design``).
        y: (n,) class ids 0..K-1, every class present (K >= 3; two classes are scikit-learn's binary model).
        C: inverse penalty strength, > 0.
        start: (K, p + 1) starting coefficients (a neighbouring C's or fold's fit); None: zero slopes and the
            log class frequencies as intercepts.
        hessian: a data Hessian (``data_hessian``) to precondition with; None: computed at ``start``.
        start_data: the ``data`` of the fit ``start`` came from, when it was fitted on these same rows (another C):
            its likelihood part is this fit's at ``start`` too, so the first pass over the rows is saved.
        tol: stop when max |gradient| <= tol.

    Raises:
        SolverError: not converged in ``max_iter`` steps.
    """
    q, n = xt.shape
    k = int(y.max()) + 1
    counts = np.eye(k)[y].T @ xt.T  # onehot(y)^T X
    flat = y.astype(np.int64) * n + np.arange(n)  # int64: labels may come as int8
    work = (np.empty((k, n)), np.empty((k, n)), np.empty(n))
    if start is None:
        start = np.zeros((k, q))
        start[:, -1] = np.log(counts[:, -1] / n)
    theta, l2 = np.array(start, dtype=np.float64), 1.0 / (C * n)
    penalty = np.tile(np.r_[np.full(q - 1, l2), 0.0], k)
    # the intercepts' common shift changes nothing (softmax), so the Hessian is singular along it; the gradient is
    # orthogonal to it, so adding that direction's outer product leaves every step's other components unchanged
    shift = np.tile(np.r_[np.zeros(q - 1), 1.0], k)
    data = start_data if start_data is not None else _data_loss_grad(xt, flat, counts, theta, work)
    loss, grad = _objective(data, theta, l2)
    factor, fresh, used = None, False, hessian
    for step in range(max_iter + 1):
        gmax = np.abs(grad).max()
        if gmax <= tol:
            break
        if step == max_iter:
            raise SolverError(f"stacked blend: the logistic regression did not converge in {max_iter} Newton steps "
                              f"(max |gradient| {gmax:.2e} > {tol:g})")  # fmt: skip
        if hessian is None:
            hessian, fresh = data_hessian(xt, theta), True
        used = hessian
        if factor is None:
            factor = cho_factor(hessian + np.diag(penalty) + np.outer(shift, shift))
        direction = -cho_solve(factor, grad.ravel()).reshape(k, q)
        slope, t = float((grad * direction).sum()), 1.0
        while True:  # Armijo backtracking: the stale metric may overshoot, a halved step never does for long
            new_data = _data_loss_grad(xt, flat, counts, theta + t * direction, work)
            new_loss, new_grad = _objective(new_data, theta + t * direction, l2)
            if new_loss <= loss + 1e-4 * t * slope or t < 1e-10:
                break
            # near the optimum the loss changes by less than its rounding (~1e-16 relative): there, as scikit-learn's
            # Newton line search does, a step that shrinks the gradient and keeps the loss within rounding is taken
            if new_loss - loss <= 1e-12 * abs(loss) and np.abs(new_grad).sum() < np.abs(grad).sum():
                break
            t *= 0.5
        theta, loss, data = theta + t * direction, new_loss, new_data
        if np.abs(new_grad).max() > REFRESH * gmax and not fresh:  # slow: refresh the metric at the current point
            hessian, factor = None, None
        grad, fresh = new_grad, False
    intercept = theta[:, -1] - theta[:, -1].mean()  # softmax-invariant: ``data`` holds at the centred theta too
    return MultinomialFit(theta[:, :-1].copy(), intercept, step, used, data)


def predict_multinomial(xt: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """(p + 1, n) transposed design, (K, p + 1) coefficients -> (n, K) class probabilities."""
    return softmax(theta @ xt, axis=0).T
