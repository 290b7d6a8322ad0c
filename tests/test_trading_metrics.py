"""Costs, turnover, sizing, the top-k book, the benchmark and PSR against hand-worked panels and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ensemble.metrics import MetricSuite, TradingConfig, trading_metrics
from ensemble.metrics.book import book_series, book_weights, size_positions
from ensemble.metrics.stats import masked_mean, phase_matrix, probabilistic_sharpe

HOUR = 3_600 * 10**9

# Hand panel: 2 symbols (A = 0, B = 1) x 6 timestamps, horizon 2, per-symbol book: w = position / 2.
#   k  pos A  pos B   r A    r B    R(t_k) = sum w r          w(t_k)        TO(t_k) = sum |w(t_k) - w(t_{k-2})|
#   0   +1     +1     .02    .01    .01 + .005   = .015      (.5, .5)      |.5| + |.5|             = 1
#   1   +1     -1     .01   -.02    .005 + .01   = .015      (.5, -.5)     |.5| + |-.5|            = 1
#   2   -1     +1    -.03    .01    .015 + .005  = .02       (-.5, .5)     |-.5 - .5| + |.5 - .5|  = 1
#   3   -1      0    -.01    .04    .005 + 0     = .005      (-.5, 0)      |-.5 - .5| + |0 + .5|   = 1.5
#   4    0      0     .05   -.02    0            = 0         (0, 0)        |0 + .5| + |0 - .5|     = 1
#   5   +1     +1     .02    .00    .01          = .01       (.5, .5)      |.5 + .5| + |.5 - 0|    = 1.5
# Each tranche (phase j = k mod 2) trades from its own holding 2 bars earlier: entry is charged at k = 0 and
# k = 1, once per tranche; the staggered book holds each tranche at 1/2, so it pays each entry at half size.
POS = [(1, 1), (1, -1), (-1, 1), (-1, 0), (0, 0), (1, 1)]
RET = [(0.02, 0.01), (0.01, -0.02), (-0.03, 0.01), (-0.01, 0.04), (0.05, -0.02), (0.02, 0.00)]
GROSS = [0.015, 0.015, 0.02, 0.005, 0.0, 0.01]
TURNOVER = [1.0, 1.0, 1.0, 1.5, 1.0, 1.5]
# Benchmark: w = .5 on both, always: R_B = mean(r A, r B); it pays only its two tranche entries.
BENCH = [0.015, -0.005, -0.01, 0.015, 0.015, 0.01]
BENCH_TURNOVER = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
H, BPY = 2, 100.0  # 50 periods a year


def hand_panel(perm: bool = False) -> tuple[torch.Tensor, ...]:
    """(time, position, fwd_return, symbol) rows of the hand panel, float64."""
    time = torch.tensor([k * HOUR for k in range(6) for _ in range(2)])
    position = torch.tensor([p for row in POS for p in row], dtype=torch.float64)
    ret = torch.tensor([r for row in RET for r in row], dtype=torch.float64)
    symbol = torch.tensor([0, 1] * 6)
    if perm:
        order = torch.randperm(12, generator=torch.Generator().manual_seed(3))
        time, position, ret, symbol = time[order], position[order], ret[order], symbol[order]
    return time, position, ret, symbol


def run(rows, config: TradingConfig, horizon: int = H, bars_per_year: float = BPY, score=None) -> dict[str, float]:
    metrics = trading_metrics(horizon, bars_per_year, config)
    time, position, ret, symbol = rows
    metrics.update(time, position, ret, symbol=symbol, score=score)
    return {k: float(v) for k, v in metrics.compute().items()}


def phase_sharpe(series: list[float], h: int, periods_per_year: float) -> float:
    """Loop reference: Sharpe (ddof=1) of each phase's series, averaged over phases, annualised."""
    values = []
    for j in range(h):
        r = np.asarray(series[j::h])
        values.append(r.mean() / r.std(ddof=1) if len(r) > 1 and r.std(ddof=1) > 0 else 0.0)
    return float(np.mean(values)) * math.sqrt(periods_per_year)


def test_turnover_gross_and_net_series_match_the_hand_panel():
    config = TradingConfig(cost_bps=10, slippage_bps=5)
    rows = hand_panel(perm=True)  # the row order never matters
    series = book_series(rows[0], *_rest(rows), H, config)
    assert series.gross.tolist() == pytest.approx(GROSS, abs=1e-15)
    assert series.turnover.tolist() == pytest.approx(TURNOVER, abs=1e-15)
    net = series.net(config.cost_rate)
    expected = [g - 15e-4 * t for g, t in zip(GROSS, TURNOVER, strict=True)]  # (10 + 5) bps per unit of |dw|
    assert torch.allclose(net, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    assert series.bench_gross.tolist() == pytest.approx(BENCH, abs=1e-15)
    assert series.bench_turnover.tolist() == pytest.approx(BENCH_TURNOVER, abs=1e-15)


def _rest(rows):
    """(symbol, position, score, fwd_return) from (time, position, fwd_return, symbol); score = position."""
    _, position, ret, symbol = rows
    return symbol, position, position, ret


def test_metrics_of_the_hand_panel():
    config = TradingConfig(cost_bps=10, slippage_bps=5)
    out = run(hand_panel(perm=True), config)
    c = 15e-4
    net = [g - c * t for g, t in zip(GROSS, TURNOVER, strict=True)]
    bench_net = [b - c * t for b, t in zip(BENCH, BENCH_TURNOVER, strict=True)]
    turnover = (np.mean(TURNOVER[0::2]) + np.mean(TURNOVER[1::2])) / 2  # (1 + 4/3) / 2 = 7/6
    mean_gross = (np.mean(GROSS[0::2]) + np.mean(GROSS[1::2])) / 2
    assert out["turnover"] == pytest.approx(7 / 6, rel=1e-12) and turnover == pytest.approx(7 / 6)
    assert out["cost_drag"] == pytest.approx(c * 7 / 6 * 50, rel=1e-12)  # per period x 50 periods a year
    assert out["break_even_bps"] == pytest.approx(1e4 * mean_gross / (7 / 6), rel=1e-12)
    assert out["sharpe"] == pytest.approx(phase_sharpe(GROSS, H, 50), rel=1e-12)
    assert out["sharpe_net"] == pytest.approx(phase_sharpe(net, H, 50), rel=1e-12)
    excess = [n - b for n, b in zip(net, bench_net, strict=True)]
    assert out["excess_return"] == pytest.approx((np.mean(excess[0::2]) + np.mean(excess[1::2])) / 2 * 50, rel=1e-12)
    assert out["information_ratio"] == pytest.approx(phase_sharpe(excess, H, 50), rel=1e-12)
    assert out["bars_per_year"] == BPY
    assert "excess_return" not in run(hand_panel(), TradingConfig(benchmark="none"))


def test_break_even_cost_zeroes_the_mean_net_return():
    rows = hand_panel()
    break_even = run(rows, TradingConfig())["break_even_bps"]
    config = TradingConfig(cost_bps=break_even)
    series = book_series(rows[0], *_rest(rows), H, config)
    net, mask = phase_matrix(series.net(config.cost_rate), H)
    assert float(masked_mean(net, mask).mean()) == pytest.approx(0.0, abs=1e-9)
    assert run(rows, config)["cost_drag"] == pytest.approx(float(np.mean(GROSS[0::2]) + np.mean(GROSS[1::2])) / 2 * 50)


@pytest.mark.parametrize(("positions", "horizon", "turnover"), [
    ([1, 1, 1, 1, 1, 1], 1, [1, 0, 0, 0, 0, 0]),  # constant: entry only, never liquidated at the end
    ([1, 1, 1, 1, 1, 1], 2, [1, 1, 0, 0, 0, 0]),  # each of the 2 tranches enters once (at 1/2 each)
    ([1, 1, 1, 1, 0, 0], 1, [1, 0, 0, 0, 1, 0]),  # closed at k = 4: exit paid once
    ([1, 1, -1, -1, -1, -1], 1, [1, 0, 2, 0, 0, 0]),  # a flip trades 2 units
])
def test_constant_position_pays_only_at_entry_and_exit(positions, horizon, turnover):
    time, symbol = torch.arange(6) * HOUR, torch.zeros(6, dtype=torch.long)
    ret = torch.full((6,), 0.01, dtype=torch.float64)
    position = torch.tensor(positions, dtype=torch.float64)
    series = book_series(time, symbol, position, position, ret, horizon, TradingConfig())
    assert series.turnover.tolist() == pytest.approx(turnover)
    out = run((time, position, ret, symbol), TradingConfig(cost_bps=10), horizon=horizon)
    assert out["turnover"] == pytest.approx(np.mean([np.mean(turnover[j::horizon]) for j in range(horizon)]))
    assert out["cost_drag"] == pytest.approx(10e-4 * out["turnover"] * BPY / horizon)


def test_symbol_without_a_row_is_closed_there():
    # A holds +1 for k = 0..3 and has no row (NaN return) at k = 4, 5; B is flat throughout, so the book has
    # 2 rows (w_A = 1/2) until k = 3 and B alone after. A's exit is paid at k = 4; nothing at the end.
    time = (torch.arange(6) * HOUR).repeat_interleave(2)
    symbol = torch.tensor([0, 1] * 6)
    position = torch.tensor([1.0, 0.0] * 6, dtype=torch.float64)
    ret = torch.tensor([0.01, 0.02] * 4 + [math.nan, 0.02] * 2, dtype=torch.float64)
    metrics = trading_metrics(1, BPY, TradingConfig())
    metrics.update(time, position, ret, symbol=symbol)
    keep = ~ret.isnan()
    series = book_series(time[keep], symbol[keep], position[keep], position[keep], ret[keep], 1, TradingConfig())
    assert series.turnover.tolist() == pytest.approx([0.5, 0, 0, 0, 0.5, 0])
    assert float(metrics.compute()["turnover"]) == pytest.approx(1 / 6)


def test_sizing_from_probabilities():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3], [0.45, 0.1, 0.45]])
    assert size_positions(probs, TradingConfig()).tolist() == [1, -1, 0, -1]  # arg-max; a tie takes the first
    assert size_positions(probs, TradingConfig(sizing="prob_diff")).tolist() == pytest.approx([0.3, -0.5, 0.0, 0.0])
    assert size_positions(probs, TradingConfig(sizing="threshold", threshold=0.5)).tolist() == [1, -1, 0, 0]
    assert size_positions(probs, TradingConfig(sizing="threshold", threshold=0.45)).tolist() == [1, -1, 0, -1]


def test_suite_sizes_positions_from_probabilities():
    # One symbol, prob_diff sizing: position = p_long - p_short; h = 1, no costs: R(t) = position * r.
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    ret = torch.tensor([0.01, -0.02, 0.03, -0.01])
    suite = MetricSuite("test", 1, 4.0, TradingConfig(sizing="prob_diff", cost_bps=0))
    suite.update(probs, probs.argmax(1), torch.arange(4) * HOUR, ret, symbol=torch.zeros(4, dtype=torch.long))
    pnl = (probs[:, 2] - probs[:, 0]).double() * ret.double()
    out = suite.compute()
    assert out["test/sharpe"] == pytest.approx(float(pnl.mean() / pnl.std()) * 2, rel=1e-6)
    # exposure is the mean |position| (0.6, 0.3, 0.4, 0.1), not the share of non-zero rows (1.0)
    assert out["test/exposure"] == pytest.approx(0.35) and out["test/n_trades"] == 4


def test_topk_is_long_the_top_and_short_the_bottom_score():
    # 3 symbols, k = 1: long the arg-max of the score, short the arg-min, 1/2 each; the middle is flat.
    score = torch.tensor([0.3, -0.2, 0.1, -0.5, 0.4, 0.0, 0.2, 0.2, -0.1], dtype=torch.float64)
    ret = torch.tensor([0.01, 0.02, -0.01, 0.03, -0.02, 0.05, 0.01, -0.01, 0.02], dtype=torch.float64)
    time = torch.arange(3).repeat_interleave(3) * HOUR
    symbol = torch.tensor([0, 1, 2] * 3)
    group = torch.arange(3).repeat_interleave(3)
    config = TradingConfig(book="topk", k=1)
    weights = book_weights(group, symbol, torch.zeros(9, dtype=torch.float64), score, config)
    # t0: max 0.3 (sym 0), min -0.2 (sym 1); t1: max 0.4 (sym 1), min -0.5 (sym 0);
    # t2: a tie at 0.2 (syms 0, 1) goes to the higher symbol code: long sym 1, short sym 2 (-0.1).
    assert weights.tolist() == [0.5, -0.5, 0.0, -0.5, 0.5, 0.0, 0.0, 0.5, -0.5]
    series = book_series(time, symbol, torch.zeros(9, dtype=torch.float64), score, ret, 1, config)
    assert series.gross.tolist() == pytest.approx([(0.01 - 0.02) / 2, (-0.02 - 0.03) / 2, (-0.01 - 0.02) / 2])
    # Turnover: 1 at entry, then t1 swaps both legs (|-.5 - .5| + |.5 + .5| = 2), t2: sym 0 -.5 -> 0, sym 2 0 -> -.5
    assert series.turnover.tolist() == pytest.approx([1.0, 2.0, 1.0])
    # Fewer than 2k rows at a timestamp: flat there.
    thin = book_weights(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                        torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), config)
    assert thin.tolist() == [0.0]
    out = run((time, torch.zeros(9, dtype=torch.float64), ret, symbol), config, horizon=1, score=score)
    assert out["n_trades"] == 6 and out["exposure"] == pytest.approx(6 / 9)


def test_excess_return_is_book_minus_benchmark():
    rows = hand_panel()
    free = TradingConfig(cost_bps=0)
    out = run(rows, free, horizon=1, bars_per_year=10.0)
    excess = np.subtract(GROSS, BENCH)  # no cost: excess = book gross - benchmark gross, per timestamp
    assert out["excess_return"] == pytest.approx(excess.mean() * 10, rel=1e-12)
    assert out["information_ratio"] == pytest.approx(excess.mean() / excess.std(ddof=1) * math.sqrt(10), rel=1e-12)


def test_psr_matches_the_closed_form():
    # Bailey and Lopez de Prado (2012): PSR = Phi(SR sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)).
    r = np.array([0.012, -0.004, 0.021, 0.003, -0.015, 0.009, 0.030, -0.002, 0.006, 0.011, -0.027, 0.014,
                  0.002, 0.008, -0.006, 0.019, 0.004, -0.001, 0.013, 0.007])
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    expected = stats.norm.cdf(sr * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    x, mask = phase_matrix(torch.tensor(r, dtype=torch.float64), 1)
    assert float(probabilistic_sharpe(x, mask)[0]) == pytest.approx(expected, abs=1e-6)
    # Through the metric: one symbol, position 1, no costs, h = 1: the book's net returns are r.
    rows = (torch.arange(len(r)) * HOUR, torch.ones(len(r), dtype=torch.float64), torch.tensor(r),
            torch.zeros(len(r), dtype=torch.long))
    assert run(rows, TradingConfig(cost_bps=0), horizon=1)["psr"] == pytest.approx(expected, abs=1e-6)
    # Against a benchmark Sharpe equal to its own, PSR is exactly 1/2.
    assert float(probabilistic_sharpe(x, mask, benchmark_sharpe=sr)[0]) == pytest.approx(0.5, abs=1e-12)


def test_net_sharpe_can_exceed_gross_when_costs_fall_on_the_best_periods():
    # Why "net Sharpe <= gross Sharpe" is not a law: a cost that lands on the best period lowers the mean
    # but lowers the std more. One symbol, h = 1: R = [.01, .03, .01, .03], turnover [1, 2, 0, 2].
    time = torch.arange(4) * HOUR
    position = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    ret = torch.tensor([0.01, -0.03, -0.01, 0.03], dtype=torch.float64)
    out = run((time, position, ret, torch.zeros(4, dtype=torch.long)), TradingConfig(cost_bps=50), horizon=1)
    assert out["sharpe_net"] > out["sharpe"] > 0
    assert out["cost_drag"] > 0  # the mean net return is still lower: costs are never free


def test_one_row_per_symbol_and_time():
    rows = (torch.zeros(2, dtype=torch.long), torch.ones(2), torch.ones(2) * 0.01, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="share a"):
        run(rows, TradingConfig(), horizon=1)


@pytest.mark.parametrize("book", ["per_symbol", "topk"])
def test_the_dense_grid_and_the_row_sorts_give_the_same_book(book, monkeypatch):
    # A panel with gaps (symbols missing at some timestamps, one closed mid-way), tied scores and shuffled
    # rows: the grid path and the ragged path (sorts over the rows) must agree (to summation order).
    rng = np.random.default_rng(3)
    t, s = np.meshgrid(np.arange(40), np.arange(7), indexing="ij")
    keep = rng.random(t.shape) > 0.25
    keep[25:, 4] = False  # symbol 4 leaves the panel for good
    perm = rng.permutation(int(keep.sum()))
    time = torch.tensor(t[keep][perm] * HOUR)
    symbol = torch.tensor(s[keep][perm] * 3 + 11)  # sparse codes: the grid compacts them
    score = torch.tensor(rng.integers(-3, 4, len(perm)) / 3.0)  # many ties
    position = torch.tensor(rng.integers(-1, 2, len(perm)), dtype=torch.float64)
    ret = torch.tensor(rng.normal(0, 0.01, len(perm)))
    config = TradingConfig(book=book, k=2)
    grid = book_series(time, symbol, position, score, ret, 3, config)
    monkeypatch.setattr("ensemble.metrics.book.panel_grid", lambda *args: None)
    rows = book_series(time, symbol, position, score, ret, 3, config)
    for a, b in zip(grid, rows, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert float(grid.turnover.sum()) > 0 and float(grid.weight.abs().sum()) > 0
