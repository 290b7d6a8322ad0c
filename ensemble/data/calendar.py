"""Annualisation from the timestamps themselves, for data whose ``bars_per_year`` is not given.

Getting it wrong scales every annualised number by sqrt(true / assumed): hourly bars annualised as if daily
understate a Sharpe by sqrt(24) when 24/7, by sqrt(7) for a 7-bar equity session.
"""

from __future__ import annotations

import numpy as np

TRADING_DAYS = 252  # per year, for markets that close (weekends, holidays)
CALENDAR_DAYS = 365  # per year, for markets that never close (the crypto convention: 24 x 365 = 8760 hours)
NS_PER_DAY = 86_400 * 10**9
# Share of timestamps on Saturday or Sunday above which a market counts as never closing: 2/7 when it
# trades every day, ~0 for exchanges (a Sunday-evening futures open stays far below 1/7).
WEEKEND_SHARE = 1 / 7


def infer_bars_per_year(times_ns: np.ndarray) -> float:
    """Bars per year of a panel from its timestamps: bars per trading day x 252, or per calendar day x 365.

    Args:
        times_ns: (N,) int64 nanoseconds (or datetime64) of any rows of the panel, any order, repeats
            across symbols allowed. Read as calendar dates in their own clock (naive or UTC).

    Returns:
        - Markets that never close (>= 1/7 of the timestamps on weekends): 365 days / median bar spacing,
          e.g. 8760 for hourly 24/7 bars, 365 for daily ones.
        - Markets that close, intraday bars: the median number of bars per active date x 252, so half days
          and holidays do not move it (e.g. 7 hourly bars per session -> 1764).
        - Markets that close, daily or coarser: 252 / the median spacing in business days (daily -> 252,
          weekly -> 50.4).

    Raises:
        ValueError: fewer than 2 distinct timestamps.
    """
    times = np.unique(np.asarray(times_ns).astype("datetime64[ns]").astype(np.int64))
    if len(times) < 2:
        raise ValueError(f"bars_per_year cannot be inferred from {len(times)} distinct timestamp(s); set it")
    days = times // NS_PER_DAY  # days since 1970-01-01, a Thursday
    weekday = (days + 3) % 7  # Monday = 0
    if np.mean(weekday >= 5) >= WEEKEND_SHARE:
        spacing = float(np.median(np.diff(times)))
        return CALENDAR_DAYS * NS_PER_DAY / spacing
    dates, bars_per_date = np.unique(days, return_counts=True)
    if np.median(bars_per_date) > 1:
        return float(np.median(bars_per_date)) * TRADING_DAYS
    gaps = np.busday_count(dates[:-1].astype("datetime64[D]"), dates[1:].astype("datetime64[D]"))
    return TRADING_DAYS / float(max(np.median(gaps), 1))
