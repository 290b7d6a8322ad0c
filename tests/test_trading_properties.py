"""Properties of the trading metrics on random panels (hypothesis): row order, costs, break-even."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble.metrics import MetricSuite, TradingConfig
from ensemble.metrics.book import book_series, size_positions
from ensemble.metrics.stats import masked_mean, phase_matrix, sharpe

COSTS = {"cost_bps": st.floats(0.5, 50), "slippage_bps": st.floats(0, 10)}
CONFIGS = st.one_of(  # a top-k book reads no sizing (any but arg-max is refused)
    st.builds(TradingConfig, **COSTS, sizing=st.sampled_from(["argmax", "prob_diff", "threshold"]),
              threshold=st.floats(0.34, 0.9), book=st.just("per_symbol")),
    st.builds(TradingConfig, **COSTS, book=st.just("topk"), k=st.integers(1, 2)),
)


@st.composite
def panels(draw) -> dict:
    """A ragged random panel: (probs, target, time, fwd_return, symbol), some NaN returns, shuffled rows."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_sym, n_time, horizon = draw(st.integers(4, 6)), draw(st.integers(3, 14)), draw(st.integers(1, 3))
    rng = np.random.default_rng(seed)
    time = np.repeat(np.arange(n_time), n_sym) * 3_600 * 10**9
    symbol = np.tile(np.arange(n_sym), n_time)
    keep = rng.random(len(time)) > 0.15  # missing rows
    keep[:n_sym] = True  # every symbol appears: the top-k book checks k against the universe
    n = int(keep.sum())
    probs = rng.dirichlet(np.ones(3), n)
    probs[rng.random(n) < 0.2] = [0.3, 0.3, 0.4]  # ties in the score across symbols
    ret = rng.normal(0, 0.02, n)
    missing = rng.random(n) < 0.1
    missing[:n_sym] = False  # a NaN return drops its row: the first timestamp keeps every symbol in the universe
    ret[missing] = np.nan
    return {"rows": (torch.tensor(probs), torch.tensor(rng.integers(0, 3, n)), torch.tensor(time[keep]),
                     torch.tensor(ret), torch.tensor(symbol[keep])), "horizon": horizon, "seed": seed}


def evaluate(rows, horizon: int, config: TradingConfig, order=None) -> dict[str, float]:
    probs, target, time, ret, symbol = rows if order is None else (x[order] for x in rows)
    suite = MetricSuite("test", horizon, 252.0, config)
    suite.update(probs, target, time, ret, symbol=symbol)
    return suite.compute()


@settings(max_examples=40, deadline=None)
@given(panels(), CONFIGS)
def test_every_metric_is_invariant_to_the_row_order(panel, config):
    rows, h = panel["rows"], panel["horizon"]
    order = torch.randperm(len(rows[0]), generator=torch.Generator().manual_seed(panel["seed"] % 2**31))
    first, shuffled = evaluate(rows, h, config), evaluate(rows, h, config, order)
    assert shuffled.keys() == first.keys()
    trading = set(MetricSuite("test", 1).trading.compute())  # float64 throughout: near-exact
    for key, value in first.items():
        # The classification metrics accumulate in float32 (torchmetrics): rounding depends on the order.
        tol = 1e-9 if key.split("/")[1] in trading else 1e-6
        if math.isnan(value):  # undefined either way (an IC IR over fewer than two cross-sections)
            assert math.isnan(shuffled[key]), key
            continue
        assert shuffled[key] == pytest.approx(value, rel=tol, abs=1e-12), key


@settings(max_examples=40, deadline=None)
@given(panels(), CONFIGS)
def test_costs_only_take_away(panel, config):
    probs, _, time, ret, symbol = panel["rows"]
    h, keep = panel["horizon"], ~ret.isnan()
    p = probs[keep]
    series = book_series(time[keep], symbol[keep], size_positions(p, config), p[:, 2] - p[:, 0], ret[keep], h, config)
    assert bool((series.turnover >= 0).all()) and bool((series.net(config.cost_rate) <= series.gross).all())
    out = evaluate(panel["rows"], h, config)
    # The annualised mean net return is the gross one minus cost_drag = c * turnover * P >= 0.
    assert out["test/cost_drag"] == pytest.approx(config.cost_rate * out["test/turnover"] * 252.0 / h, rel=1e-12)
    assert out["test/cost_drag"] >= 0
    if out["test/turnover"] > 0:  # at the break-even cost the mean net return is 0
        at_break_even = out["test/break_even_bps"] * 1e-4
        net, mask = phase_matrix(series.gross - at_break_even * series.turnover, h)
        assert float(masked_mean(net, mask).mean()) == pytest.approx(0.0, abs=1e-12)
    # With no cost at all, net is gross, and so is its Sharpe.
    free = evaluate(panel["rows"], h, TradingConfig(cost_bps=0, sizing=config.sizing, threshold=config.threshold,
                                                    book=config.book, k=config.k))
    assert free["test/sharpe_net"] == pytest.approx(free["test/sharpe"], rel=1e-12, abs=1e-12)
    assert math.isfinite(out["test/psr"]) and 0 <= out["test/psr"] <= 1


@settings(max_examples=25, deadline=None)
# Returns rounded to 1e-8: a return of 1e-38 vanishes when the cost (>= 1e-4) is subtracted, so the net series
# is constant (Sharpe 0) while the gross one still has a sign; that is float absorption, not a book.
@given(st.lists(st.floats(-0.05, 0.05).map(lambda r: round(r, 8)), min_size=4, max_size=30), st.floats(0.5, 20))
def test_net_sharpe_is_below_gross_when_turnover_is_the_same_every_period(returns, cost_bps):
    # Net Sharpe <= gross Sharpe is not a law (tests/test_trading_metrics.py has a counterexample): it holds
    # when every period pays the same cost. One symbol, h = 1, the position flips every bar: after the entry
    # (turnover 1, left out of the comparison) every rebalance trades exactly 2 units.
    n = len(returns)
    time = torch.arange(n) * 3_600 * 10**9
    side = torch.tensor([(-1.0) ** k for k in range(n)], dtype=torch.float64)
    ret = torch.tensor(returns, dtype=torch.float64)
    config = TradingConfig(cost_bps=cost_bps)
    series = book_series(time, torch.zeros(n, dtype=torch.long), side, side, ret, 1, config)
    assert series.turnover[1:].tolist() == [2.0] * (n - 1)
    gross, mask = phase_matrix(series.gross[1:], 1)
    net = phase_matrix(series.net(config.cost_rate)[1:], 1)[0]
    assert float(sharpe(net, mask)[0]) <= float(sharpe(gross, mask)[0]) + 1e-12
