"""Ways to combine member probabilities. ``fit`` sees validation data only, by signature.

Shapes: member probabilities are ``(M, N, 3)`` (members, rows, short/flat/long), labels ``(N,)`` class
ids in {0, 1, 2}; every ``predict_proba`` returns ``(N, 3)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize

from ensemble.data.constants import NUM_CLASSES
from ensemble.errors import ConfigError

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


def true_class_probs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M, N, 3), (N,) -> (M, N) float64: each member's probability of the true class, p_m[y]."""
    return probs[:, np.arange(len(labels)), labels].astype(np.float64)


def _mean_nll(own: np.ndarray) -> np.ndarray:
    """(..., N) true-class probabilities -> (...) mean negative log, clipped as ``log_loss``."""
    return -np.log(np.clip(own, _EPS, 1.0)).mean(axis=-1)


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

    def state(self) -> dict:
        """The fitted blend as JSON-ready data: ``{"method", "weights"}`` (weights in member order)."""
        return {"method": self.name, "weights": self.weights_.tolist()}

    def _load(self, state: dict) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)


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
        own = true_class_probs(val_probs, val_labels)  # (M, N) p_m[y], rows contiguous: two GEMVs an evaluation

        def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            q = w @ own
            clipped = np.maximum(q, _EPS)
            # below the clip the loss is flat in w; its gradient there is zero
            grad = -(own @ ((q > _EPS) / clipped)) / len(q)
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
        """Fit on (M, N, 3) probabilities and their (N,) labels in {0, 1, 2}."""
        check_member_probs(val_probs, val_labels)
        return self.fit_features(self.features(val_probs), val_labels)

    def fit_features(self, x: np.ndarray, labels: np.ndarray, start: StackedBlend | None = None) -> StackedBlend:
        """Fit on (N, 3M) ``features``; ``start``: a fit of the same classes (a neighbouring C's, or an earlier
        fold's) whose coefficients scikit-learn's warm start begins from. It changes the path, not the optimum:
        every fit runs to the same tolerance on its own rows.

        Raises:
            RuntimeError: the logistic regression did not converge in 100 Newton steps.
        """
        from sklearn.linear_model import LogisticRegression

        # Newton steps on the 3 x (3M + 1) coefficients converge to 1e-8 in a handful of iterations on the
        # correlated log-probability features, where lbfgs took ~600 (35 s on 9 members x 87k rows, over the
        # 10%-of-a-member budget of tools/bench_blend.py); newton-cholesky is multinomial from sklearn 1.6.
        model = LogisticRegression(C=self.C, solver="newton-cholesky", max_iter=100, tol=1e-8)
        warm = start is not None and np.array_equal(start.model_.classes_, np.unique(labels))
        if warm:
            model.set_params(warm_start=True)
            model.coef_, model.intercept_ = start.model_.coef_.copy(), start.model_.intercept_.copy()
        self.model_ = model.fit(x, labels)
        if self.model_.n_iter_.max() >= 100:
            raise RuntimeError("stacked blend: the logistic regression did not converge in 100 Newton steps")
        return self

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """(N, 3M) features -> (N, 3); a class absent from the fit's labels gets probability 0."""
        out = np.zeros((x.shape[0], NUM_CLASSES))
        out[:, self.model_.classes_] = self.model_.predict_proba(x)
        return out

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        """(M, N, 3) -> (N, 3); a class absent from the val labels gets probability 0."""
        check_member_probs(probs)
        return self.predict_features(self.features(probs))

    def state(self) -> dict:
        """``{"method", "C", "classes", "coef", "intercept"}``: the logistic regression's fitted coefficients
        ((K, 3M) or (1, 3M) for two classes), enough to predict without pickling scikit-learn's object."""
        m = self.model_
        return {"method": self.name, "C": self.C, "classes": m.classes_.tolist(), "coef": m.coef_.tolist(),
                "intercept": m.intercept_.tolist()}

    def _load(self, state: dict) -> None:
        from sklearn.linear_model import LogisticRegression

        # the fitted attributes predict_proba reads; the same scikit-learn code then predicts bit for bit
        model = LogisticRegression(C=self.C)
        model.classes_ = np.asarray(state["classes"], dtype=np.int64)
        model.coef_ = np.asarray(state["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        model.n_features_in_ = model.coef_.shape[1]
        self.model_ = model


_TIE = 1e-12  # nats: log losses this close are equal (the same mixture summed in another order)


class BestMember(MeanBlend):
    """No blend: all the weight on the member with the lowest log loss (ties: the lowest member index)."""

    name = "best"

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> BestMember:
        check_member_probs(val_probs, val_labels)
        losses = _mean_nll(true_class_probs(val_probs, val_labels))
        self.weights_ = np.zeros(len(losses))
        self.weights_[np.flatnonzero(losses <= losses.min() + _TIE)[0]] = 1.0
        return self


_SCREEN = 1e-5  # nats: bound on a float32 mean log loss's error here (per-row error < 2e-6 for p >= 1e-7)


def _greedy_step(own: np.ndarray, own32: np.ndarray, buf: np.ndarray, row: np.ndarray, total: np.ndarray,
                 size: int) -> tuple[int, float]:  # fmt: skip
    """One greedy selection: the member whose addition to the running sum ``total`` ((N,), ``size - 1`` members
    selected) gives the lowest mean log loss of ``(total + own_m) / size``, ties within ``_TIE`` to the lowest
    index; and that loss. ``own`` (M, N) float64, ``own32`` its float32 copy, ``buf`` an (M, N) float32 and ``row``
    an (N,) float64 scratch array (reused: fresh arrays this size cost page faults as dear as the arithmetic).

    All M candidates are scored at once in float32 (its log is ~4x faster than float64's); every candidate within
    ``2 * _SCREEN + _TIE`` of the float32 minimum is then scored again in float64, and the choice made on those
    exact losses. Any candidate that could win (or tie) in float64 is within that margin in float32, so the pick
    and its loss are those of scoring all M in float64.
    """
    np.add(own32, total.astype(np.float32), out=buf)
    # the mean clipped below at _EPS as log_loss; its clip at 1 only trims float32 rounding (< 1e-7 nats) here
    np.maximum(buf, np.float32(_EPS * size), out=buf)
    screen = math.log(size) - np.log(buf, out=buf).mean(axis=1, dtype=np.float64)
    close = np.flatnonzero(screen <= screen.min() + 2 * _SCREEN + _TIE)
    exact = np.empty(len(close))
    for i, member in enumerate(close):  # _mean_nll((total + own[close]) / size) row by row, in one scratch row
        np.add(total, own[member], out=row)
        np.divide(row, size, out=row)
        exact[i] = -np.log(np.clip(row, _EPS, 1.0, out=row), out=row).mean()
    best = int(np.flatnonzero(exact <= exact.min() + _TIE)[0])
    return int(close[best]), float(exact[best])


class CaruanaBlend(MeanBlend):
    """Greedy ensemble selection with replacement minimising log loss (Caruana, Niculescu-Mizil, Crew and
    Ksikes 2004, "Ensemble selection from libraries of models", ICML; sections 2.1-2.3).

    Start from the ``init`` members with the lowest log loss, each selected once ("sorted initialisation");
    then ``size - init`` times add the member (any, again and again: with replacement) whose addition gives
    the lowest log loss of the mean of the selected members' probabilities. As in the paper, the returned
    ensemble is the prefix of that sequence with the lowest loss (ties: the shorter one), never shorter
    than the initialisation. ``weights_`` = selection counts / their total; ``counts_`` holds the counts;
    ``sequences_`` and ``path_losses_`` the whole greedy path of each bag (member indices, and the loss
    after each selection from the initialisation on), before the best prefix is taken.

    With ``bags``, the selection runs ``bags`` times, each on a random ``bag_fraction`` of the members
    (rounded, and at least ``min(M, max(2, init))`` of them: a bag of one member is a coin flip that can hand
    all the weight to the worse member; drawn without replacement by ``numpy.random.default_rng(seed)``;
    ``bags_`` holds each bag's member indices), and the blend is the
    average of the bags' ensembles (the paper's bagged selection, which damps overfitting of the selection
    itself): ``weights_`` is the mean over bags of each bag's counts / total, so a bag whose best prefix is
    long does not outvote one whose best prefix is short; ``counts_`` sums the bags' counts.

    Ties between candidates (losses within 1e-12 nats) go to the lowest member index, so the result is
    deterministic. Each step scores all M candidate additions at once on the (M, N) true-class matrix
    (``_greedy_step``: a float32 screen, the close ones again in float64): no Python loop over rows.

    Args:
        size: the number of selections, >= 1 (>= ``init``).
        init: members of lowest log loss selected once before the greedy steps, 0..M (capped at a bag's
            member count).
        bags: None for one selection over all members, else the number of bags, >= 1.
        bag_fraction: share of the members in each bag, in (0, 1] (each bag holds at least
            ``min(M, max(2, init))`` members).
        seed: seed of the bags' draws.

    Raises:
        ConfigError: an option out of range (``init`` above the member count: at ``fit``).
    """

    name = "caruana"

    def __init__(self, size: int = 50, init: int = 1, bags: int | None = None, bag_fraction: float = 0.5,
                 seed: int = 0) -> None:
        if size < 1 or init < 0 or init > size:
            raise ConfigError(f"caruana: need size >= 1 and 0 <= init <= size, got size={size}, init={init}")
        if bags is not None and bags < 1:
            raise ConfigError(f"caruana: bags must be >= 1 (or None for no bagging), got {bags}")
        if not 0 < bag_fraction <= 1:
            raise ConfigError(f"caruana: bag_fraction must be in (0, 1], got {bag_fraction}")
        self.size, self.init, self.bags, self.bag_fraction, self.seed = size, init, bags, bag_fraction, seed

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> CaruanaBlend:
        check_member_probs(val_probs, val_labels)
        m = val_probs.shape[0]
        if self.init > m:
            raise ConfigError(f"caruana: init={self.init} is more than the {m} members")
        own = true_class_probs(val_probs, val_labels)
        if self.bags is None:
            bags = [np.arange(m)]
        else:
            rng = np.random.default_rng(self.seed)
            # at least two members a bag (and the init ones): with one, the bag's "selection" is the draw itself
            k = max(min(m, max(2, self.init)), round(self.bag_fraction * m))
            bags = [np.sort(rng.choice(m, size=k, replace=False)) for _ in range(self.bags)]
        self.bags_ = bags
        counts, weights = np.zeros(m, dtype=np.int64), np.zeros(m)
        self.sequences_, self.path_losses_ = [], []
        for members in bags:
            sequence, losses = self._path(own[members])
            length = int(np.flatnonzero(losses <= losses.min() + _TIE)[0]) + len(sequence) - len(losses) + 1
            bag_counts = np.bincount(members[sequence[:length]], minlength=m)
            counts += bag_counts
            weights += bag_counts / length / len(bags)
            self.sequences_.append(members[sequence])
            self.path_losses_.append(losses)
        self.counts_ = counts
        self.weights_ = weights / weights.sum()  # sums to 1 up to rounding already
        return self

    def state(self) -> dict:
        """``{"method", "size", "init", "bags", "bag_fraction", "seed", "weights", "counts"}``."""
        return {"method": self.name, "size": self.size, "init": self.init, "bags": self.bags,
                "bag_fraction": self.bag_fraction, "seed": self.seed, "weights": self.weights_.tolist(),
                "counts": self.counts_.tolist()}

    def _load(self, state: dict) -> None:
        super()._load(state)
        self.counts_ = np.asarray(state["counts"], dtype=np.int64)

    def _path(self, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, N) true-class probabilities -> the greedy sequence (size,) of member indices and the log
        losses after the initialisation and after each greedy step (size - init + 1,), or (size,) if
        ``init`` is 0."""
        m = len(own)
        init = min(self.init, m)
        order = np.argsort(_mean_nll(own), kind="stable")  # stable: equal losses keep the lower index first
        sequence = list(order[:init])
        total = own[sequence].sum(axis=0)  # (N,) running sum of the selected members' p[y]
        losses = [float(_mean_nll(total / init))] if init else []
        own32, buf, row = own.astype(np.float32), np.empty(own.shape, np.float32), np.empty(own.shape[1])
        for k in range(init, self.size):
            pick, loss = _greedy_step(own, own32, buf, row, total, k + 1)
            sequence.append(pick)
            total += own[pick]
            losses.append(loss)
        return np.asarray(sequence, dtype=np.int64), np.asarray(losses)


METHODS = {cls.name: cls for cls in (MeanBlend, WeightedBlend, StackedBlend, CaruanaBlend, BestMember)}

# each method's constructor options, as blend_options / --caruana.* name them
OPTIONS = {"stacked": ("C",), "caruana": ("size", "init", "bags", "bag_fraction", "seed")}


def from_state(state: dict) -> MeanBlend | StackedBlend:
    """The fitted blend that ``state()`` wrote: its ``predict_proba`` equals the original's.

    Raises:
        ConfigError: an unknown method, or a state without the keys that method writes (naming them).
    """
    method = state.get("method") if isinstance(state, dict) else None
    if method not in METHODS:
        raise ConfigError(f"blend state: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    options = OPTIONS.get(method, ())
    fitted = {"stacked": ("classes", "coef", "intercept"), "caruana": ("weights", "counts")}.get(method, ("weights",))
    missing = [k for k in (*options, *fitted) if k not in state]
    if missing:
        raise ConfigError(f"blend state of method '{method}' lacks {', '.join(map(repr, missing))}")
    blend = METHODS[method](**{k: state[k] for k in options})
    blend._load(state)
    return blend
