"""``TradingConfig`` validation (one line naming the key) and ``infer_bars_per_year`` on real calendars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.data.calendar import snap_bars_per_year
from ensemble.metrics import MetricSuite, TradingConfig, infer_bars_per_year, trading_metrics


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cost_bps": -1}, "trading.cost_bps must be >= 0, got -1"),
    ({"slippage_bps": float("nan")}, "trading.slippage_bps must be >= 0, got nan"),
    ({"sizing": "threshold", "threshold": 1 / 3}, "trading.threshold must lie in (1/3, 1), got 0.333"),
    ({"sizing": "threshold", "threshold": 1.0}, "trading.threshold must lie in (1/3, 1), got 1.0"),
    ({"sizing": "kelly"}, "trading.sizing must be one of argmax, prob_diff, threshold, got 'kelly'"),
    ({"book": "top"}, "trading.book must be one of per_symbol, topk, got 'top'"),
    ({"benchmark": "spx"}, "trading.benchmark must be one of equal_weight, none, got 'spx'"),
    ({"book": "topk", "k": 0}, "trading.k must be an integer >= 1, got 0"),
    ({"bars_per_year": 0}, "trading.bars_per_year must be > 0 (or null to infer it), got 0"),
])
def test_bad_values_fail_with_one_line_naming_the_key(kwargs, message):
    with pytest.raises(ValueError) as err:
        TradingConfig(**kwargs)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text


def test_every_problem_comes_in_one_line_and_options_that_do_not_apply_are_not_judged():
    with pytest.raises(ValueError) as err:
        TradingConfig(cost_bps=-1, sizing="threshold", threshold=2.0, benchmark="spx")
    assert str(err.value) == ("trading.cost_bps must be >= 0, got -1; trading.benchmark must be one of equal_weight, "
                              "none, got 'spx'; trading.threshold must lie in (1/3, 1), got 2.0")
    TradingConfig(sizing="argmax", threshold=2.0, k=0)  # neither read by an arg-max per-symbol book
    TradingConfig(book="topk", k=2, threshold=0.1)  # topk ranks the score: an unread threshold is not judged
    # ... but a sizing the top-k book ignores is refused, not silently dropped, and its threshold is judged too
    with pytest.raises(ValueError) as err:
        TradingConfig(book="topk", k=2, sizing="threshold", threshold=2.0)
    assert str(err.value) == ("trading.sizing does not apply to book: topk (equal-weight legs ranked by p_long - "
                              "p_short); leave it argmax, got 'threshold'; trading.threshold must lie in (1/3, 1), "
                              "got 2.0")
    with pytest.raises(ValueError, match=r"^trading.k must be an integer >= 1, got 0$"):
        TradingConfig(book="topk", k=0)


def test_k_larger_than_half_the_symbols_is_checked_when_the_symbols_are_known():
    config = TradingConfig(book="topk", k=3)
    config.check_symbols(6)  # 2k = 6 symbols: fine
    with pytest.raises(ValueError, match=r"^trading.k must be <= half the symbols \(2 of 5\), got 3$"):
        config.check_symbols(5)
    TradingConfig(k=3).check_symbols(2)  # k only matters to the top-k book
    # The metrics check it against the symbols they see.
    metrics = trading_metrics(1, 252.0, TradingConfig(book="topk", k=2))
    metrics.update(torch.zeros(3, dtype=torch.long), torch.ones(3), torch.ones(3) * 0.01, symbol=torch.arange(3))
    with pytest.raises(ValueError, match=r"^trading.k must be <= half the symbols \(1 of 3\), got 2$"):
        metrics.compute()


def test_defaults_and_the_cost_rate():
    config = TradingConfig()
    assert (config.cost_bps, config.slippage_bps, config.sizing, config.book, config.benchmark) == (
        5.0, 0.0, "argmax", "per_symbol", "equal_weight")
    assert config.bars_per_year is None
    assert TradingConfig(cost_bps=7, slippage_bps=3).cost_rate == pytest.approx(1e-3)


def test_config_bars_per_year_wins_and_none_infers_from_the_rows():
    assert MetricSuite("val", 1, 252.0, TradingConfig(bars_per_year=8760)).compute()["val/bars_per_year"] == 8760
    suite = MetricSuite("val", 1, None)
    n = 24 * 14  # two weeks of hourly bars, weekends included
    time = torch.tensor(_ns(pd.date_range("2024-01-01", periods=n, freq="h")))
    suite.update(torch.full((n, 3), 1 / 3), torch.ones(n, dtype=torch.long), time, torch.zeros(n),
                 symbol=torch.zeros(n, dtype=torch.long))
    assert suite.compute()["val/bars_per_year"] == 8760  # hourly, weekend included: 24 x 365


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    return index.as_unit("ns").asi8


def test_daily_bars_with_weekends_and_holidays_are_252():
    days = pd.bdate_range("2023-01-02", "2024-12-31")
    holidays = pd.to_datetime(["2023-01-16", "2023-05-29", "2023-07-04", "2023-12-25", "2024-01-01", "2024-07-04"])
    days = days.difference(holidays)
    times = np.repeat(_ns(days), 3)  # 3 symbols: repeats do not count as bars
    assert infer_bars_per_year(times) == 252.0
    assert infer_bars_per_year(_ns(days[::5])) == 52.0  # weekly bars: 252 / 5 = 50.4 snaps to 52


def test_hourly_equity_session_bars_are_bars_per_session_times_252():
    days = pd.bdate_range("2024-01-02", "2024-06-28")
    session = [pd.Timedelta(hours=10 + i) for i in range(7)]  # 10:00 .. 16:00: 7 bars a day
    times = [d + s for d in days for s in session]
    half_day = pd.Timestamp("2024-06-28")  # an early close changes nothing: the median day is full
    times = [t for t in times if not (t.normalize() == half_day and t.hour > 12)]
    assert infer_bars_per_year(_ns(pd.DatetimeIndex(times))) == 7 * 252


@pytest.mark.parametrize(("freq", "expected"), [("h", 8760.0), ("15min", 35040.0), ("D", 365.0)])
def test_markets_that_never_close_count_calendar_days(freq, expected):
    times = _ns(pd.date_range("2024-01-01", periods=2000, freq=freq))
    assert infer_bars_per_year(np.random.default_rng(0).permutation(times)) == pytest.approx(expected)


def test_daily_bars_at_local_midnight_east_of_utc_are_an_exchange_calendar():
    # Tokyo midnight is 15:00 UTC the day before: in UTC every Monday bar falls on a Sunday (2/7 weekend).
    local = pd.bdate_range("2024-01-01", "2024-12-31", tz="Asia/Tokyo")
    utc_ns = _ns(local.tz_convert("UTC"))
    assert np.mean(pd.DatetimeIndex(utc_ns).dayofweek >= 5) > 1 / 7  # the trap: read in UTC it never closes
    assert infer_bars_per_year(utc_ns) == 365.0  # without the timezone, as before
    assert infer_bars_per_year(utc_ns, "Asia/Tokyo") == 252.0
    assert infer_bars_per_year(pd.Series(local)) == 252.0  # a tz-aware column carries its own timezone


@pytest.mark.parametrize(("times", "expected"), [
    (pd.date_range("2015-01-31", periods=60, freq="ME"), 12.0),  # month ends: 252 / 21.x -> 12, not 11.77
    (pd.date_range("2015-01-02", periods=60, freq="BMS"), 12.0),
    (pd.date_range("2015-03-31", periods=20, freq="QE"), 4.0),
    (pd.date_range("2024-01-01", periods=3000, freq="7min"), 365 * 1440 / 7),  # 205.7 bars a day: as measured
])
def test_inferred_values_snap_to_standard_calendars(times, expected):
    assert infer_bars_per_year(_ns(times)) == pytest.approx(expected, rel=1e-12)


def test_snapping_rule():
    assert snap_bars_per_year(11.77, 252) == 12.0 and snap_bars_per_year(50.4, 252) == 52.0
    assert snap_bars_per_year(30.0, 252) == 30.0  # nothing standard within 5%: kept
    assert snap_bars_per_year(24.02 * 365, 365) == 8760.0 and snap_bars_per_year(6.5 * 252, 252) == 6.5 * 252


def test_too_few_timestamps_is_an_error():
    with pytest.raises(ValueError, match="1 distinct timestamp"):
        infer_bars_per_year(np.array([5, 5, 5]))
