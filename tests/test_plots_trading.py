"""The equity figure (gross, net, benchmark, drawdown) and the IC figure: their data, units and titles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_trading_metrics import BENCH, BENCH_TURNOVER, GROSS, HOUR, POS, RET, TURNOVER

from ensemble.metrics import TradingConfig, trading_metrics
from ensemble.metrics.curves import equity_curves, ic_series
from ensemble.training.artifacts import PROB_COLUMNS, write_stage
from ensemble.training.plots import equity_curve_figure, ic_figure

ONE_HOT = {1: [0.1, 0.2, 0.7], -1: [0.7, 0.2, 0.1], 0: [0.2, 0.6, 0.2]}  # arg-max = the hand position


def hand_probs() -> tuple[torch.Tensor, ...]:
    time = torch.tensor([k * HOUR for k in range(6) for _ in range(2)])
    probs = torch.tensor([ONE_HOT[p] for row in POS for p in row], dtype=torch.float64)
    ret = torch.tensor([r for row in RET for r in row], dtype=torch.float64)
    return time, torch.tensor([0, 1] * 6), probs, ret


def test_equity_curves_are_the_staggered_book_of_the_hand_panel():
    config = TradingConfig(cost_bps=10, slippage_bps=5)
    curves = equity_curves(*hand_probs(), 2, config)
    c = 15e-4
    assert curves.gross.tolist() == pytest.approx(np.cumsum(GROSS) / 2, abs=1e-15)
    assert curves.net.tolist() == pytest.approx(np.cumsum(np.subtract(GROSS, c * np.array(TURNOVER))) / 2, abs=1e-15)
    assert curves.benchmark.tolist() == pytest.approx(
        np.cumsum(np.subtract(BENCH, c * np.array(BENCH_TURNOVER))) / 2, abs=1e-15)
    assert float(curves.net[-1]) < float(curves.gross[-1])


def test_equity_figure_shows_gross_net_benchmark_and_drawdown_with_units():
    times = (np.datetime64("2024-01-01T00", "ns") + np.arange(4) * np.timedelta64(1, "h"))
    gross, net, bench = np.array([0.01, 0.04, 0.02, 0.05]), np.array([0.01, 0.03, 0.0, 0.02]), np.zeros(4)
    fig = equity_curve_figure(times, gross, "lightgbm h=5 test: equity", net=net, benchmark=bench)
    top, bottom = fig.axes
    assert top.get_title() == "lightgbm h=5 test: equity"
    assert top.get_ylabel() == "cumulative return (%)" and bottom.get_ylabel() == "drawdown of net (%)"
    assert bottom.get_xlabel() == "time (UTC)"
    lines = {line.get_label(): line.get_ydata() for line in top.lines if not line.get_label().startswith("_")}
    assert list(lines) == ["gross", "net of costs", "benchmark (equal weight, net)"]
    np.testing.assert_allclose(lines["gross"], 100 * gross)
    np.testing.assert_allclose(lines["net of costs"], 100 * net)
    # Drawdown of the net curve: peak 3% at t1, trough 0% at t2 -> -3 points; then -1.
    low = bottom.collections[0].get_paths()[0].vertices[:, 1]
    assert low.min() == pytest.approx(-3.0)
    only_gross = equity_curve_figure(times, gross, "t")  # the old call still works
    assert [line.get_label() for line in only_gross.axes[0].lines if not line.get_label().startswith("_")] == [
        "gross"]
    assert only_gross.axes[1].get_ylabel() == "drawdown (%)"  # of gross, the only curve


def test_the_equity_title_names_the_cost_and_the_book():
    assert TradingConfig().describe() == "5 bps, arg-max, per-symbol book"
    assert TradingConfig(cost_bps=5, slippage_bps=2, book="topk", k=10).describe() == "7 bps, top-10 book"
    assert TradingConfig(sizing="prob_diff", cost_bps=0).describe() == "0 bps, p_long - p_short, per-symbol book"
    threshold = TradingConfig(sizing="threshold", threshold=0.45)
    assert threshold.describe() == "5 bps, arg-max if p >= 0.45, per-symbol book"


def test_ic_figure_plots_ic_per_timestamp_and_its_rolling_mean():
    times = np.datetime64("2024-01-01T00", "ns") + np.arange(30) * np.timedelta64(1, "h")
    ic = np.random.default_rng(0).normal(0.05, 0.2, 30)
    fig = ic_figure(times, ic, "lightgbm h=5 test: IC", window=10)
    (ax,) = fig.axes
    raw, rolling = (line for line in ax.lines if not line.get_label().startswith("_"))
    np.testing.assert_allclose(raw.get_ydata(), ic)
    np.testing.assert_allclose(rolling.get_ydata(), pd.Series(ic).rolling(10, min_periods=1).mean())
    assert rolling.get_label() == "rolling mean (10 timestamps)"
    assert ax.get_ylabel() == "IC (correlation, -1 to 1)" and ax.get_title() == "lightgbm h=5 test: IC"
    assert ic_figure(times[:3], ic[:3], "short", window=100).axes[0].lines[1].get_label() == (
        "rolling mean (3 timestamps)")


def test_ic_series_matches_the_metric():
    rng = np.random.default_rng(2)
    n_time, n_sym = 20, 5
    time = torch.tensor(np.repeat(np.arange(n_time), n_sym) * HOUR)
    probs = torch.tensor(rng.dirichlet(np.ones(3), n_time * n_sym))
    ret = torch.tensor(rng.normal(0, 0.01, n_time * n_sym))
    ret[:3] = float("nan")  # t0 keeps 2 rows: skipped
    series = ic_series(time, probs, ret)
    metrics = trading_metrics(1, 252.0, TradingConfig())
    metrics.update(time, probs.argmax(1) - 1.0, ret, symbol=torch.tensor(np.tile(np.arange(n_sym), n_time)),
                   score=probs[:, 2] - probs[:, 0])
    out = metrics.compute()
    assert len(series.times) == n_time and int((~series.valid).sum()) == int(out["ic_skipped"]) == 1
    assert float(series.ic[series.valid].mean()) == pytest.approx(float(out["ic"]), abs=1e-12)
    assert float(series.rank_ic[series.valid].mean()) == pytest.approx(float(out["rank_ic"]), abs=1e-12)


def test_write_stage_writes_the_equity_and_ic_figures(tmp_path):
    time, _, probs, ret = hand_probs()
    df = pd.DataFrame({"datetime": time.numpy().astype("datetime64[ns]"), "symbol": np.array(["A", "B"] * 6),
                       "label": np.zeros(12, dtype=np.int8), **{c: probs[:, i].numpy().astype(np.float32)
                                                                for i, c in enumerate(PROB_COLUMNS)},
                       "prediction": (probs.argmax(1) - 1).numpy().astype(np.int8),
                       "fwd_return": ret.numpy().astype(np.float32)})
    run = tmp_path / "lightgbm_h5" / "version_0"
    write_stage(run, "test", df, {"test/sharpe": 1.0}, 2, [], 0)
    for name in ("confusion_matrix", "equity_curve", "ic"):
        assert (run / "plots" / f"test_{name}.png").stat().st_size > 0, name
    expected = {"test/sharpe": 1.0, "checkpoint/test": None, "test/partial": False}
    assert json.loads((run / "metrics.json").read_text()) == expected


def test_ic_figure_with_no_timestamp_says_so_instead_of_an_empty_1970_axis():
    fig = ic_figure(np.array([], dtype="datetime64[ns]"), np.array([]), "gru h=5 test: IC", skipped=40)
    (ax,) = fig.axes
    assert not ax.lines and not ax.axison
    assert ax.get_title() == "gru h=5 test: IC: no IC (undefined)"
    assert "no timestamp with 3 or more symbols (40 skipped)" in ax.texts[0].get_text()
