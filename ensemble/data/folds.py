"""Walk-forward folds cut inside one panel: test blocks on the panel's clock, purge and embargo in bars.

The span (train ∪ val, or all three splits) is one ``SplitPanel`` sorted by (symbol, time), so each symbol's
bars are counted exactly. Its distinct target timestamps are cut into ``folds + 1`` contiguous groups of
(nearly) equal size, as scikit-learn's ``TimeSeriesSplit`` does; group 0 is only ever trained on, and fold k
(1..folds) predicts group k. For each symbol, with ``b`` the first bar of the fold's test block:

- the training window is its bars before ``b`` (``rolling``: only the last ``train_bars`` of them);
- the inner validation slice runs from bar ``v`` to ``b``: the symbol's last ``val_bars`` labelled bars (or
  ``val_fraction`` of the window's labelled bars) whose label windows end before ``b``, then the purged bars;
- **purge** (López de Prado, *Advances in Financial Machine Learning*, 2018, §7.4.1): a row ``t`` whose label
  window ``(t, t+h]`` reaches bar ``v`` (training targets) or bar ``b`` (inner-val targets) is dropped as a
  target, i.e. kept only when ``t + h < v`` (resp. ``< b``). It stays in the panel, so later windows may
  still read it as past context;
- **embargo** (ibid. §7.4.2): ``k`` more bars are dropped before each boundary: ``t + h + k < v`` (resp. b).
  Here training always precedes the blocks it is judged on, so the embargo widens the gap.

Everything is row indices into the one panel: nothing is copied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ensemble.data.contract import DataContractError
from ensemble.data.panel import SplitPanel, format_time

MODES = ("expanding", "rolling")
# test-only switch: "0" turns purge and embargo off, so the planted-leak test can show it is able to fail
PURGE_ENV = "ENSEMBLE_WF_PURGE"


@dataclass(frozen=True)
class FoldSpec:
    """How to cut folds. Bars are rows of one symbol.

    Args:
        folds: test blocks (>= 2).
        mode: ``expanding`` (train on all bars before the block) or ``rolling`` (the last ``train_bars``).
        train_bars: the rolling training window per symbol, inner-val slice included; rolling mode only.
        val_bars: inner-val targets per symbol, in bars (the purged bars before the block come on top); wins
            over ``val_fraction``.
        val_fraction: inner-val targets as a fraction (0, 1) of each symbol's training window.
        embargo: extra bars dropped before each boundary, after the purged label windows (>= 0).

    Raises:
        DataContractError: a value out of range, naming its ``wf.*`` key.
    """

    folds: int = 5
    mode: str = "expanding"
    train_bars: int | None = None
    val_bars: int | None = None
    val_fraction: float = 0.2
    embargo: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise DataContractError(f"wf.folds must be >= 2, got {self.folds}")
        if self.mode not in MODES:
            raise DataContractError(f"wf.mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.mode == "rolling" and (self.train_bars is None or self.train_bars < 2):
            raise DataContractError(f"wf.train_bars must be >= 2 in rolling mode, got {self.train_bars}")
        if self.mode == "expanding" and self.train_bars is not None:
            raise DataContractError("wf.train_bars applies to wf.mode rolling only; set --wf.mode rolling")
        if self.val_bars is not None and self.val_bars < 1:
            raise DataContractError(f"wf.val_bars must be >= 1, got {self.val_bars}")
        if not 0.0 < self.val_fraction < 1.0:
            raise DataContractError(f"wf.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.embargo < 0:
            raise DataContractError(f"wf.embargo must be >= 0, got {self.embargo}")


@dataclass
class Fold:
    """One fold's targets as row indices (int64, ascending) into the span panel, and its clock."""

    number: int  # 1-based
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    purged: int  # eligible rows of the training window dropped by purge and embargo
    test_start: int  # ns, first timestamp of the block
    test_end: int | None  # ns, first timestamp after the block (None: the span's end)

    def describe(self, time: np.ndarray, tz: str | None) -> dict[str, object]:
        """One ``folds.csv`` row: start/end per the panel's clock and the rows in each part."""
        out: dict[str, object] = {"fold": self.number}
        for part in ("train", "val", "test"):
            rows = getattr(self, part)
            out[f"{part}_start"] = format_time(int(time[rows].min()), tz) if rows.size else ""
            out[f"{part}_end"] = format_time(int(time[rows].max()), tz) if rows.size else ""
            out[f"{part}_rows"] = int(rows.size)
        out["rows_purged"] = self.purged
        return out


def bar_positions(symbol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bar index of each row within its symbol block and (N,) the block's length; rows grouped by symbol."""
    n = len(symbol)
    starts = np.flatnonzero(np.r_[True, symbol[1:] != symbol[:-1]]) if n else np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.r_[starts, n])
    first = np.repeat(starts, lengths)
    return np.arange(n) - first, np.repeat(lengths, lengths)


def block_bounds(time: np.ndarray, eligible: np.ndarray, folds: int) -> np.ndarray:
    """(folds + 2,) ns cut points: block k spans ``[cuts[k], cuts[k+1])``; the last cut is past the span.

    Raises:
        DataContractError: fewer distinct target timestamps than ``folds + 1``.
    """
    clock = np.unique(time[eligible])
    if len(clock) < folds + 1:
        raise DataContractError(
            f"wf.folds={folds}: the span has only {len(clock)} distinct target timestamps; use fewer folds"
        )
    idx = (np.arange(folds + 1) * len(clock)) // (folds + 1)
    return np.r_[clock[idx], clock[-1] + 1]


def cut_folds(panel: SplitPanel, eligible: np.ndarray, horizon: int, spec: FoldSpec,
              clock: np.ndarray | None = None) -> list[Fold]:  # fmt: skip
    """The folds of ``spec`` over ``panel``.

    Args:
        panel: the span, sorted by (symbol, time).
        eligible: (N,) bool, rows that may be targets (labelled, not context, a full window behind them).
        horizon: h, the label window ``(t, t+h]`` in bars.
        clock: (N,) bool, the rows whose timestamps the blocks are cut on (default ``eligible``). Cutting on
            the labelled rows whatever the window length gives models of other ``seq_len`` the same folds, so
            their out-of-fold predictions can be blended fold for fold.

    Raises:
        DataContractError: a fold with no training, inner-val or test target, naming the fold and the fix.
    """
    symbol, time = panel.symbol.cpu().numpy(), panel.time.cpu().numpy()
    pos, _ = bar_positions(symbol)
    purge = os.environ.get(PURGE_ENV, "1") != "0"
    gap = horizon + spec.embargo if purge else 0
    cuts = block_bounds(time, eligible if clock is None else clock, spec.folds)
    n_symbols = int(symbol.max()) + 1 if len(symbol) else 0
    # expanding mode already trains on every bar before the block: only a longer first group or less taken off helps
    train_hint = "use fewer folds or a longer wf.train_bars" if spec.mode == "rolling" else (
        "use fewer folds, a smaller wf.val_bars / wf.val_fraction, or a shorter horizon / wf.embargo")
    def parts(targets: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, in_window) masks of the fold whose block starts at ``start``, rows of ``targets``."""
        # per symbol: b = bars before the block (the block's first bar), lo = the window's first bar
        b = np.bincount(symbol, weights=time < start, minlength=n_symbols).astype(np.int64)
        lo = np.maximum(b - spec.train_bars, 0) if spec.mode == "rolling" else np.zeros_like(b)
        in_window = targets & (pos >= lo[symbol]) & (pos < b[symbol])
        n_val = (np.full_like(b, spec.val_bars) if spec.val_bars is not None
                 else np.round(spec.val_fraction * np.bincount(symbol, weights=in_window, minlength=n_symbols)))
        # inner val: each symbol's last n_val targets whose label window ends before the block (missing labels
        # are skipped, so a split's unlabelled tail never empties it); it starts at bar v
        can_val = in_window & (pos + gap < b[symbol])
        val = can_val & (_count_from_end(can_val, symbol, n_symbols) <= np.maximum(n_val, 1)[symbol])
        v = b - gap
        np.minimum.at(v, symbol[val], pos[val])
        return in_window & (pos + gap < v[symbol]), val, in_window

    folds = []
    for k in range(1, spec.folds + 1):
        start, end = int(cuts[k]), int(cuts[k + 1])
        train, val, in_window = parts(eligible, start)
        test = eligible & (time >= start) & (time < end)
        fold = Fold(k, np.flatnonzero(train), np.flatnonzero(val), np.flatnonzero(test),
                    int(in_window.sum() - train.sum() - val.sum()), start,
                    None if k == spec.folds else end)  # fmt: skip
        for i, (part, hint) in enumerate((("train", train_hint),
                                          ("val", "raise wf.val_bars / wf.val_fraction, or use fewer folds"))):
            if getattr(fold, part).size:
                continue
            where = f"walk-forward fold {k} (test block from {format_time(start, panel.tz)}): no {part} target"
            if clock is not None and parts(clock, start)[i].any():  # labelled rows would do: the warm-up took them
                raise DataContractError(
                    f"{where} has a full input window behind it (data.seq_len bars of its own symbol); use a "
                    "shorter data.seq_len or fewer folds"
                    + (f", or a smaller wf.embargo (now {spec.embargo} bars)" if spec.embargo else ""))  # fmt: skip
            raise DataContractError(f"{where} is left after purging h={horizon} and embargo={spec.embargo} bars; "
                                    f"{hint}")
        folds.append(fold)
    return folds


def _count_from_end(mask: np.ndarray, symbol: np.ndarray, n_symbols: int) -> np.ndarray:
    """(N,) for each row, how many ``mask`` rows of its symbol lie at or after it (rows grouped by symbol)."""
    after = np.cumsum(mask[::-1])[::-1]  # mask rows from here to the end of the panel
    ends = np.cumsum(np.bincount(symbol, minlength=n_symbols))  # each block's end (exclusive)
    beyond = np.r_[after, 0][ends]  # mask rows after each block
    return after - beyond[symbol]
