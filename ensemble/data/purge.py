"""Label overlap between the given splits, counted in bars of each symbol's own clock.

A row at bar ``t`` with horizon ``h`` has the label window ``(t, t+h]``. It leaks into the next split when
that window reaches the next split's first row of the same symbol, at ``T0``: when fewer than ``h`` of the
symbol's bars lie strictly between ``t`` and ``T0`` (purging, López de Prado, *Advances in Financial Machine
Learning*, 2018, ch. 7.4). Upstream splits are meant to be purged already; this module finds the rows that
are not, so loading can refuse them or null their labels (``data.purge_labels``).

Bars are not rows: a row dropped upstream is still a bar. Each symbol's bar clock is inferred from the
timestamps of the whole panel (all splits), in each file's own timezone:

- a *slot* of symbol ``s`` is a time whose time-of-day is one at which ``s`` has a row somewhere, on a weekday
  on which ``s`` has a row somewhere, on a date on which *any* symbol of the panel has a row;
- so weekends (no row of ``s`` on that weekday) and holidays (a date on which no symbol traded) are not
  bars, while a row one symbol lacks on a date the others traded is a bar (it was dropped upstream).

A holiday of one symbol's exchange on a date other symbols traded counts as a bar, which can hide a one-bar
overlap; with a single symbol a dropped whole day cannot be told from a holiday and is not counted, which can
report a one-bar overlap that a purge counting the dropped day would not have. Times of day in a daylight
saving change's repeated hour are compared as local times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.data.contract import DataContractError
from ensemble.data.panel import format_time

DAY_NS = 86_400 * 10**9


@dataclass
class SplitKeys:
    """One split's keys in file order: symbol codes into ``names``, UTC ns times, which rows have a label."""

    path: Path
    codes: np.ndarray  # (N,) int64
    times: np.ndarray  # (N,) int64 UTC ns
    names: list[str]
    tz: str | None
    labelled: np.ndarray  # (N,) bool

    def local(self) -> np.ndarray:
        """(N,) int64 ns wall-clock times in the file's timezone (UTC ns for naive times)."""
        if self.tz is None:
            return self.times
        stamps = pd.DatetimeIndex(self.times.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(self.tz)
        return stamps.tz_localize(None).asi8


@dataclass
class Overlap:
    """Rows of ``symbol`` in split ``early`` whose label windows reach ``late``'s first row ``first_late``."""

    early: int  # split index
    late: int
    symbol: str
    times: np.ndarray  # (k,) UTC ns of the overlapping labelled rows, ascending
    first_late: int  # UTC ns


def _pairs(codes: np.ndarray, values: np.ndarray, base: int, n_codes: int) -> list[tuple[int, int]]:
    """Distinct (code, value) pairs, 0 <= value < base: one int64 key each (a 1-D unique is a plain sort)
    while ``n_codes * base`` fits int64 (106,000 symbols for times of day), else a row-wise unique."""
    if n_codes < np.iinfo(np.int64).max // base:
        code, value = np.divmod(np.unique(codes * base + values), base)
        return list(zip(code.tolist(), value.tolist(), strict=True))
    return [tuple(pair) for pair in np.unique(np.stack([codes, values], axis=1), axis=0).tolist()]


class _Clock:
    """The bar slots of every symbol: open dates of the panel, and per symbol its weekdays and times of day."""

    def __init__(self, splits: list[SplitKeys], locals_: list[np.ndarray]) -> None:
        days = [np.floor_divide(t, DAY_NS) for t in locals_]
        self.open_days = set(np.unique(np.concatenate(days)).tolist())
        self.weekdays: dict[str, set[int]] = {}
        tods: dict[str, set[int]] = {}
        for keys, local, day in zip(splits, locals_, days, strict=True):
            weekday, tod = (day + 3) % 7, local - day * DAY_NS  # 1970-01-01 was a Thursday (weekday 3)
            for out, values, base in ((self.weekdays, weekday, 7), (tods, tod, DAY_NS)):
                for code, value in _pairs(keys.codes, values, base, len(keys.names)):
                    out.setdefault(keys.names[code], set()).add(value)
        self.tods = {name: sorted(td, reverse=True) for name, td in tods.items()}  # latest first

    def slot_before(self, symbol: str, first: int, h: int, floor: int) -> int | None:
        """The ``h``-th slot of ``symbol`` strictly before local time ``first``, walking back no earlier than
        local time ``floor``; None when fewer than ``h`` slots lie in between (every later row overlaps)."""
        tods, weekdays = self.tods[symbol], self.weekdays[symbol]
        day, count = first // DAY_NS, 0
        while day * DAY_NS + DAY_NS > floor:
            if day in self.open_days and (day + 3) % 7 in weekdays:
                for tod in tods:
                    slot = day * DAY_NS + tod
                    if slot < first:
                        count += 1
                        if count == h:
                            return slot if slot >= floor else None
            day -= 1
        return None


def _first_rows(keys: SplitKeys, local: np.ndarray, mask: np.ndarray | None = None) -> dict[str, int]:
    """Symbol name -> file row of its earliest (local time) row, among ``mask`` rows if given."""
    rows = np.flatnonzero(mask) if mask is not None else np.arange(len(keys.codes))
    order = rows[np.lexsort((local[rows], keys.codes[rows]))]
    codes = keys.codes[order]
    first = order[np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])] if len(order) else order
    return {keys.names[int(keys.codes[r])]: int(r) for r in first}


def label_overlaps(splits: list[SplitKeys], horizon: int) -> list[Overlap]:
    """Every (earlier split, symbol) whose labelled rows reach the symbol's first row in a later split.

    Args:
        splits: the splits in time order (train, val, test).
        horizon: h, the label horizon in bars.

    Returns:
        One ``Overlap`` per earlier split and symbol with at least one such row, in split then symbol order.
    """
    locals_ = [keys.local() for keys in splits]
    clock = _Clock(splits, locals_)
    firsts = [_first_rows(keys, local) for keys, local in zip(splits, locals_, strict=True)]
    found = []
    for i, early in enumerate(splits):
        local = locals_[i]
        threshold = np.full(len(early.names), np.iinfo(np.int64).max)  # per code: rows at or after it overlap
        next_split: dict[str, tuple[int, int]] = {}  # symbol -> (later split, its first row there)
        code_of = {name: code for code, name in enumerate(early.names)}
        for name, row in _first_rows(early, local, early.labelled).items():
            later = [(locals_[j][firsts[j][name]], j) for j in range(i + 1, len(splits)) if name in firsts[j]]
            if not later:
                continue
            first_late, j = min(later)
            next_split[name] = (j, firsts[j][name])
            slot = clock.slot_before(name, int(first_late), horizon, int(local[row]))
            threshold[code_of[name]] = np.iinfo(np.int64).min if slot is None else slot
        hit = early.labelled & (local >= threshold[early.codes])
        for code in np.unique(early.codes[hit]):
            name = early.names[int(code)]
            j, row = next_split[name]
            times = np.sort(early.times[hit & (early.codes == code)])
            found.append(Overlap(i, j, name, times, int(splits[j].times[row])))
    return found


def overlap_error(splits: list[SplitKeys], names: tuple[str, ...], overlaps: list[Overlap], horizon: int) -> None:
    """Raise the one-line error for the first overlap, naming the split pair, the symbol, the rows and the fix.

    Raises:
        DataContractError: always (call it only with ``overlaps``).
    """
    first = overlaps[0]
    early, late = splits[first.early], splits[first.late]
    more = len(overlaps) - 1
    also = f" ({more} more symbol/split pair{'s' if more > 1 else ''} overlap too)" if more else ""
    raise DataContractError(
        f"{early.path}: label overlap {names[first.early]} -> {names[first.late]}: symbol '{first.symbol}' has "
        f"{len(first.times)} labelled row(s) from {format_time(int(first.times[0]), early.tz)} whose "
        f"{horizon}-bar label windows reach {late.path.name}, which starts at "
        f"{format_time(first.first_late, late.tz)}{also}; purge them upstream (null label_h{horizon} within "
        f"{horizon} bars of the next split) or set --data.purge_labels true"
    )
