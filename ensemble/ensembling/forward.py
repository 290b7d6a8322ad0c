"""Forward-only fitting of a blend on out-of-fold rows: the weights that score fold f are fitted on folds before f,
purged of rows whose label window reaches f; every fit records what it saw (provenance).

Shapes: member probabilities ``(M, N, 3)``, labels ``(N,)`` class ids 0..2, ``time`` ``(N,)`` int64 ns UTC,
``fold`` ``(N,)`` ints (the walk-forward's test block of each row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ensemble.ensembling.methods import StackedBlend, check_member_probs, log_loss
from ensemble.errors import ConfigError

# stacked's regularisation grid (scikit-learn's C = 1 / L2 strength), smallest first: ties go to the stronger
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
DEFAULT_C = 1.0  # fold 2 has no earlier scored fold to choose C on


def iso(ns: int) -> str:
    """An int64 ns UTC timestamp as ISO text (``2024-01-02T10:00:00+00:00``)."""
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


@dataclass
class Clock:
    """Each row's bar on its symbol's clock, counted over the rows given (the members' shared oof and test rows).

    A bar missing from those rows (a row no member predicted) is not counted, which only makes a purge wider.
    """

    time: np.ndarray  # (N,) int64 ns of the rows the clock is asked about
    ahead: np.ndarray  # (N,) ns of the bar ``gap`` bars after each row on its symbol's clock; int64 max if past the end
    label_end: np.ndarray  # (N,) ns of the bar ``h`` bars after each row (its label window's last bar), or max

    @classmethod
    def build(cls, symbol: np.ndarray, time: np.ndarray, horizon: int, gap: int,
              more_symbol: np.ndarray | None = None, more_time: np.ndarray | None = None) -> Clock:  # fmt: skip
        """The clock of rows (``symbol``, ``time``), with later rows (``more_*``, e.g. test) counted as bars too."""
        n = len(time)
        all_symbol = np.r_[symbol, more_symbol] if more_symbol is not None else np.asarray(symbol)
        all_time = np.asarray(np.r_[time, more_time] if more_time is not None else time, np.int64)
        codes = pd.factorize(all_symbol)[0].astype(np.int64)
        ranks = np.unique(all_time, return_inverse=True)[1].reshape(-1).astype(np.int64)
        key = codes * (int(ranks.max()) + 1) + ranks  # orders as (symbol, time); equal keys: one bar
        bars, first = np.unique(key, return_index=True)  # the distinct bars, sorted by (symbol, time)
        bar_time, bar_code = all_time[first], codes[first]
        starts = np.r_[0, np.flatnonzero(np.diff(bar_code)) + 1]  # each symbol's first bar
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(bars)]))
        pos, length = np.arange(len(bars)) - starts[group], np.diff(np.r_[starts, len(bars)])[group]
        rows = np.searchsorted(bars, key[:n])

        def after(k: int) -> np.ndarray:
            out = np.full(len(bars), np.iinfo(np.int64).max)
            inside = pos + k < length
            out[inside] = bar_time[np.flatnonzero(inside) + k]
            return out[rows]

        return cls(all_time[:n], after(gap), after(horizon))

    def purged(self, first: int) -> np.ndarray:
        """(N,) bool: rows whose label window (``gap`` bars: h plus any embargo) reaches the bar at ``first``."""
        return self.ahead >= first


def take_rows(array: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    """``np.compress(mask, array, axis)``, as a view (no copy) when the selected rows are one contiguous run, as a
    fold's rows and (in time order, every symbol on one clock) its purged fit rows are."""
    where = np.flatnonzero(mask)
    if len(where) and where[-1] - where[0] + 1 == len(where):
        return array[(slice(None),) * axis + (slice(where[0], where[-1] + 1),)]
    return np.compress(mask, array, axis=axis)


@dataclass
class ForwardFit:
    """What forward-only fitting gave: predictions of the scored folds and what each fit saw."""

    probs: np.ndarray  # (N, 3): rows of folds 2..F predicted, rows of fold 1 NaN
    scored: np.ndarray  # (N,) bool: rows of folds 2..F
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # fold -> fit_last, scored_first, ...


def provenance(time: np.ndarray, clock: Clock, fit: np.ndarray, scored_first: int, **extra: Any) -> dict[str, Any]:
    """``fit_last`` (latest timestamp a fit row has), ``label_last`` (latest bar a fit row's label window reaches;
    a window past the last shared bar counts as its row's own time), ``scored_first`` (first timestamp scored), as
    ISO text, plus the fit's row count and ``extra``."""
    end = np.where(clock.label_end == np.iinfo(np.int64).max, time, clock.label_end)
    return {"fit_last": iso(time[fit].max()), "label_last": iso(end[fit].max()),
            "scored_first": iso(scored_first), "fit_rows": int(fit.sum()), **extra}  # fmt: skip


def fit_rows(fold: np.ndarray, clock: Clock, f: int, first: int, guard: bool = True) -> np.ndarray:
    """(N,) bool: the rows a fit for fold ``f`` (first scored timestamp ``first``) may see: folds before ``f`` whose
    label windows end before ``first``. ``guard=False`` (tests only) sees every row, leaking the future."""
    if not guard:
        return np.ones(len(fold), dtype=bool)
    return (fold < f) & ~clock.purged(first)


def _fold_rows(fold: np.ndarray, clock: Clock, f: int, guard: bool) -> tuple[np.ndarray, int, np.ndarray]:
    """Fold ``f``'s scored rows (N,) bool, its first timestamp (ns) and the rows a fit for it may use (``fit_rows``).

    Raises:
        ConfigError: no row is left to fit on after the purge.
    """
    rows = fold == f
    first = int(clock.time[rows].min())
    fit = fit_rows(fold, clock, f, first, guard)
    if not fit.any():
        raise ConfigError(f"fold {f}: no out-of-fold row before it is left after purging its label windows; "
                          "use fewer, longer folds")  # fmt: skip
    return rows, first, fit


def forward_fit(factory: Callable[[], Any], probs: np.ndarray, labels: np.ndarray, fold: np.ndarray, clock: Clock,
                guard: bool = True) -> ForwardFit:  # fmt: skip
    """Fit a fresh blend per fold f = 2..F on ``fit_rows`` and predict fold f's rows.

    Raises:
        ConfigError: a fold with no row to fit on after the purge (too few folds, or folds shorter than h).
    """
    out = np.full((probs.shape[1], 3), np.nan)
    folds = np.unique(fold)
    result = ForwardFit(out, np.isin(fold, folds[1:]))
    for f in folds[1:]:
        rows, first, fit = _fold_rows(fold, clock, f, guard)
        model = factory().fit(take_rows(probs, fit, 1), labels[fit])
        out[rows] = model.predict_proba(take_rows(probs, rows, 1))
        result.provenance[str(int(f))] = provenance(clock.time, clock, fit, first)
    return result


@dataclass
class StackedChoice:
    """Stacked's C per scored fold (chosen on earlier folds only) and for the final fit (on all scored folds)."""

    fit: ForwardFit
    final_c: float
    losses: dict[str, float]  # C -> forward-only log loss over folds 2..F
    start: StackedBlend | None = None  # the last fold's fit at ``final_c``: the final fit's warm start
    features: np.ndarray | None = None  # (N, 3M) the log-probability features of all rows


def forward_stacked(probs: np.ndarray, labels: np.ndarray, fold: np.ndarray, clock: Clock, grid=C_GRID,
                    guard: bool = True) -> StackedChoice:  # fmt: skip
    """Stacked blends with C chosen by forward validation, nested so fold f's predictions see folds < f only.

    For each C of ``grid`` the forward-only predictions of folds 2..F are made (as ``forward_fit`` would). Fold f
    is then predicted with the C whose forward log loss over folds 2..f-1 is lowest (fold 2: ``DEFAULT_C``); the
    final C is the lowest over all of folds 2..F. Ties go to the smaller C (stronger regularisation).

    The (C, fold) fits share their work, never their rows: the log-probability features are computed once, and
    each fit warm-starts from the previous C's solution on the same fold (the first C from the previous fold's,
    scikit-learn's ``warm_start``); each still runs to the same tolerance on its own fold's rows, so the result
    is the cold fits' to ~1e-8.

    Raises:
        ConfigError: as ``forward_fit``.
        ValueError: probabilities or labels of the wrong shape or values (``check_member_probs``).
    """
    check_member_probs(probs, labels)
    x = StackedBlend.features(probs)  # (N, 3M), once for every (C, fold)
    folds = np.unique(fold)
    scored = np.isin(fold, folds[1:])
    fits = {c: ForwardFit(np.full((probs.shape[1], 3), np.nan), scored) for c in grid}
    last: dict[float, StackedBlend] = {}
    for f in folds[1:]:
        rows, first, fit = _fold_rows(fold, clock, f, guard)
        x_fit, y_fit, x_rows = take_rows(x, fit, 0), labels[fit], take_rows(x, rows, 0)
        seen = provenance(clock.time, clock, fit, first)  # the same rows for every C
        start = last.get(grid[0])  # the first C from the previous fold's
        for c in grid:
            start = last[c] = StackedBlend(C=c).fit_features(x_fit, y_fit, start)
            fits[c].probs[rows] = start.predict_features(x_rows)
            fits[c].provenance[str(int(f))] = seen
    out = np.full((probs.shape[1], 3), np.nan)
    result = ForwardFit(out, scored)

    def best(upto: np.ndarray) -> float:
        losses = [log_loss(fits[c].probs[upto], labels[upto]) for c in grid]
        return grid[int(np.argmin(losses))]  # argmin: the first (smallest C) of equal losses

    for f in folds[1:]:
        earlier = np.isin(fold, folds[(folds > folds[0]) & (folds < f)])
        c = best(earlier) if earlier.any() else (DEFAULT_C if DEFAULT_C in grid else grid[0])
        rows = fold == f
        out[rows] = fits[c].probs[rows]
        result.provenance[str(int(f))] = {**fits[c].provenance[str(int(f))], "C": c}
    losses = {str(c): log_loss(fits[c].probs[scored], labels[scored]) for c in grid}
    final_c = best(scored)
    return StackedChoice(result, final_c, losses, last.get(final_c), x)


@dataclass
class MethodFit:
    """One method fitted out-of-fold: its forward-only predictions, the final blend (fitted on the rows ``final_rows``,
    all out-of-fold rows whose label windows end before the test split) and what blend.json records besides."""

    forward: ForwardFit
    final: Any
    final_rows: np.ndarray  # (N,) bool
    record: dict[str, Any] = field(default_factory=dict)  # stacked: C and C_losses


def fit_method(method: str, factory: Callable[[], Any], probs: np.ndarray, labels: np.ndarray, fold: np.ndarray,
               clock: Clock, test_first: int | None, guard: bool = True, grid=C_GRID) -> MethodFit:  # fmt: skip
    """Forward-only fits of ``method`` (``forward_stacked`` for stacked, else ``forward_fit`` of ``factory``) and the
    final blend, on the rows before ``test_first`` (ns; None: all rows); stacked chooses C from ``grid`` (a given C:
    one value), and its final fit starts from the last fold's solution at the chosen C.

    Raises:
        ConfigError: as ``forward_fit``.
    """
    fit = ~clock.purged(test_first) if test_first is not None and guard else np.ones(len(clock.time), dtype=bool)
    if method == "stacked":
        choice = forward_stacked(probs, labels, fold, clock, grid, guard=guard)
        final = StackedBlend(C=choice.final_c).fit_features(take_rows(choice.features, fit, 0), labels[fit],
                                                            choice.start)  # fmt: skip
        return MethodFit(choice.fit, final, fit, {"C": choice.final_c, "C_losses": choice.losses})
    forward = forward_fit(factory, probs, labels, fold, clock, guard)
    return MethodFit(forward, factory().fit(take_rows(probs, fit, 1), labels[fit]), fit)
