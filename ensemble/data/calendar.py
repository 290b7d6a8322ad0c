"""Annualisation from the timestamps themselves, for data whose ``bars_per_year`` is not given.

Getting it wrong scales every annualised number by sqrt(true / assumed): hourly bars annualised as if daily
understate a Sharpe by sqrt(24) when 24/7, by sqrt(7) for a 7-bar equity session.

Weekdays are judged on the data's own wall clock: daily bars stamped at midnight Tokyo time are 15:00 UTC
the day before, so read in UTC a Monday bar looks like a Sunday one and an exchange looks like a market
that never closes (365 instead of 252).

Snapping: a raw estimate within ``SNAP_TOLERANCE`` (relative) of a standard calendar is replaced by it, so
monthly bars give 12 (not 252 / 21.4 = 11.77) and weekly bars of a closing market 52 (not 252 / 5 = 50.4).
The standards are 1, 4, 12, 52, 252 and 365 bars a year; intraday, whole bars per day (to within 0.05 bar)
times 252 (markets that close) or 365 (markets that never close). Anything else (e.g. 7-minute bars, 205.7
a day) is kept as measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRADING_DAYS = 252  # per year, for markets that close (weekends, holidays)
CALENDAR_DAYS = 365  # per year, for markets that never close (the crypto convention: 24 x 365 = 8760 hours)
NS_PER_DAY = 86_400 * 10**9
# Share of timestamps on Saturday or Sunday above which a market counts as never closing: 2/7 when it
# trades every day, ~0 for exchanges (a Sunday-evening futures open stays far below 1/7).
WEEKEND_SHARE = 1 / 7
STANDARD_CALENDARS = (1.0, 4.0, 12.0, 52.0, float(TRADING_DAYS), float(CALENDAR_DAYS))  # bars a year
SNAP_TOLERANCE = 0.05  # relative distance within which an estimate snaps to a standard calendar


def snap_bars_per_year(raw: float, days_per_year: int) -> float:
    """``raw`` snapped to the nearest standard calendar within ``SNAP_TOLERANCE``, else ``raw`` itself.

    Intraday estimates (``raw`` > ``days_per_year``) snap instead to whole bars per day times
    ``days_per_year`` (252 for markets that close, 365 for those that never do) when the bars per day are
    within ``SNAP_TOLERANCE`` of a whole number (so 7-minute bars, 205.7 a day, stay as measured).
    """
    if raw > days_per_year:
        per_day = raw / days_per_year
        whole = abs(per_day - round(per_day)) <= SNAP_TOLERANCE
        return round(per_day) * float(days_per_year) if whole else float(raw)
    best = min(STANDARD_CALENDARS, key=lambda c: abs(raw - c))
    return best if abs(raw - best) <= SNAP_TOLERANCE * best else float(raw)


def wall_clock_ns(times_ns: object, tz: str | None = None) -> np.ndarray:
    """(N,) int64 ns on the data's own wall clock: UTC instants shifted by their UTC offset in ``tz``.

    ``times_ns`` is int64 ns / datetime64 (instants in UTC, or naive wall-clock times when ``tz`` is None),
    or a tz-aware pandas ``DatetimeIndex`` / ``Series``, whose own timezone is used when ``tz`` is None.
    """
    if isinstance(times_ns, pd.Series):
        times_ns = pd.DatetimeIndex(times_ns)
    zone = tz or getattr(times_ns, "tz", None)
    if zone is None:
        return np.asarray(times_ns).astype("datetime64[ns]").astype(np.int64)
    if getattr(times_ns, "tz", None) is not None:
        index = pd.DatetimeIndex(times_ns)
    else:  # int64 / datetime64 instants in UTC
        index = pd.DatetimeIndex(np.asarray(times_ns).astype("datetime64[ns]")).tz_localize("UTC")
    return index.tz_convert(str(zone)).tz_localize(None).as_unit("ns").asi8


def infer_bars_per_year(times_ns: np.ndarray, tz: str | None = None) -> float:
    """Bars per year of a panel from its timestamps: bars per trading day x 252, or per calendar day x 365.

    Args:
        times_ns: (N,) int64 nanoseconds (or datetime64) of any rows of the panel, any order, repeats
            across symbols allowed; or a tz-aware pandas DatetimeIndex / Series.
        tz: the data's timezone (e.g. ``"Asia/Tokyo"``) when ``times_ns`` are UTC instants of tz-aware data;
            weekdays and dates are read on that wall clock (``wall_clock_ns``). None: read as given.

    Returns:
        - Markets that never close (>= 1/7 of the timestamps on weekends): 365 days / median bar spacing,
          e.g. 8760 for hourly 24/7 bars, 365 for daily ones.
        - Markets that close, intraday bars: the median number of bars per active date x 252, so half days
          and holidays do not move it (e.g. 7 hourly bars per session -> 1764).
        - Markets that close, daily or coarser: 252 / the median spacing in business days (daily -> 252,
          weekly -> 50.4).
        Each then snapped to a standard calendar when within 5% of one (``snap_bars_per_year``): weekly
        bars of an exchange give 52, monthly bars 12.

    Raises:
        ValueError: fewer than 2 distinct timestamps.
    """
    times = np.unique(wall_clock_ns(times_ns, tz))
    if len(times) < 2:
        raise ValueError(f"bars_per_year cannot be inferred from {len(times)} distinct timestamp(s); set it")
    days = times // NS_PER_DAY  # days since 1970-01-01, a Thursday
    weekday = (days + 3) % 7  # Monday = 0
    if np.mean(weekday >= 5) >= WEEKEND_SHARE:
        spacing = float(np.median(np.diff(times)))
        return snap_bars_per_year(CALENDAR_DAYS * NS_PER_DAY / spacing, CALENDAR_DAYS)
    dates, bars_per_date = np.unique(days, return_counts=True)
    if np.median(bars_per_date) > 1:
        return snap_bars_per_year(float(np.median(bars_per_date)) * TRADING_DAYS, TRADING_DAYS)
    gaps = np.busday_count(dates[:-1].astype("datetime64[D]"), dates[1:].astype("datetime64[D]"))
    return snap_bars_per_year(TRADING_DAYS / float(max(np.median(gaps), 1)), TRADING_DAYS)
