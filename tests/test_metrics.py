"""Metric suite: trading metrics against a hand-computed panel, classification against hand/numpy values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ensemble.metrics import (
    CLASS_NAMES,
    Exposure,
    LogLoss,
    MaxDrawdown,
    MetricSuite,
    NumTrades,
    ProfitFactor,
    SharpeRatio,
    WinRate,
    classification_metrics,
    equity_curve,
    trading_metrics,
)

DAY = 86_400 * 10**9  # ns
T0 = 1_600_000_000 * 10**9

# Hand panel: 2 symbols (A, B) x 8 timestamps, horizon 2, bars_per_year 200 -> annualisation sqrt(200/2) = 10.
# Rows per timestamp: (A position, A fwd_return, B position, B fwd_return); pnl = position * fwd_return;
# R(t) = equal-weight mean of the two pnls, flat rows (position 0) count as cash in the mean.
#   k  A          B          pnl A   pnl B   R(t_k)
#   0  +1  .03    -1  .01     .03    -.01     .01
#   1   0  .05    +1  .04     0       .04     .02   (cash counts: not .04)
#   2  -1 -.04    +1  .02     .04     .02     .03
#   3  +1 -.05    -1 -.01    -.05     .01    -.02
#   4  +1 -.02     0  .07    -.02     0      -.01
#   5  -1 -.01    +1  .03     .01     .03     .02
#   6  +1  .02     0 -.03     .02     0       .01
#   7  -1  .01    +1  .05    -.01     .05     .02
PANEL = [
    (+1, 0.03, -1, 0.01),
    (0, 0.05, +1, 0.04),
    (-1, -0.04, +1, 0.02),
    (+1, -0.05, -1, -0.01),
    (+1, -0.02, 0, 0.07),
    (-1, -0.01, +1, 0.03),
    (+1, 0.02, 0, -0.03),
    (-1, 0.01, +1, 0.05),
]
HORIZON, BARS_PER_YEAR = 2, 200.0
R = [0.01, 0.02, 0.03, -0.02, -0.01, 0.02, 0.01, 0.02]
# Phase split for h=2: R_0 = R[0::2] = [.01, .03, -.01, .01], R_1 = R[1::2] = [.02, -.02, .02, .02].
# Sharpe R_0: mean .01, deviations (0, .02, -.02, 0), var = 8e-4 / 3, std = .0163299 -> .01/std = sqrt(3/8).
# Sharpe R_1: mean .01, deviations (.01, -.03, .01, .01), var = 12e-4 / 3 = 4e-4, std = .02 -> .5.
SHARPE = (math.sqrt(3 / 8) * 10 + 0.5 * 10) / 2  # = 5.5619, annualised by sqrt(200 / 2), not sqrt(200)
# Drawdown: E_0 = [0, .01, .04, .03, .04] -> .01; E_1 = [0, .02, 0, .02, .04] -> .02; mean over phases.
MAX_DRAWDOWN = (0.01 + 0.02) / 2
# Trades (position != 0): 13 of 16 rows. Trade pnls: .03 -.01 .04 .04 .02 -.05 .01 -.02 .01 .03 .02 -.01 .05
# -> 9 wins summing to .25, 4 losses summing to -.09.
N_TRADES, EXPOSURE, WIN_RATE, PROFIT_FACTOR = 13.0, 13 / 16, 9 / 13, 0.25 / 0.09
# Equity: cumsum(R / h) = [.005, .015, .03, .02, .015, .025, .03, .04]; final .04 = (sum R_0 + sum R_1) / 2.
EQUITY = [0.005, 0.015, 0.03, 0.02, 0.015, 0.025, 0.03, 0.04]

# Keys the suite reports beyond EXPECTED (tested in tests/test_trading_metrics.py).
TRADING_ADDED = ["sharpe_net", "psr", "turnover", "cost_drag", "break_even_bps", "excess_return",
                 "information_ratio", "ic", "icir", "rank_ic", "rank_icir", "ic_skipped", "bars_per_year"]

EXPECTED = {
    "sharpe": SHARPE,
    "max_drawdown": MAX_DRAWDOWN,
    "n_trades": N_TRADES,
    "exposure": EXPOSURE,
    "win_rate": WIN_RATE,
    "profit_factor": PROFIT_FACTOR,
}


def hand_rows(shuffle: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(time, position, fwd_return, symbol) of the hand panel, irregular ns timestamps, rows shuffled."""
    gaps = torch.tensor([0, 1, 2, 5, 6, 7, 8, 12])  # irregular spacing: only the order of timestamps matters
    time, position, ret = [], [], []
    for k, (pa, ra, pb, rb) in enumerate(PANEL):
        t = T0 + int(gaps[k]) * DAY
        time += [t, t]
        position += [pa, pb]
        ret += [ra, rb]
    time, position, ret = torch.tensor(time), torch.tensor(position, dtype=torch.float32), torch.tensor(ret)
    symbol = torch.arange(len(time)) % 2  # A = 0, B = 1
    if shuffle:
        perm = torch.randperm(len(time), generator=torch.Generator().manual_seed(0))
        time, position, ret, symbol = time[perm], position[perm], ret[perm], symbol[perm]
    return time, position, ret, symbol


def compute_all(*batches, horizon: int = HORIZON, bars_per_year: float = BARS_PER_YEAR) -> dict[str, float]:
    """The gross metrics of EXPECTED from batches of (time, position, fwd_return[, symbol]).

    Without a symbol column every row is its own symbol, which changes no gross metric.
    """
    metrics = trading_metrics(horizon, bars_per_year)
    for i, batch in enumerate(batches):
        time, position, ret, *symbol = batch
        codes = symbol[0] if symbol else torch.arange(len(time)) + 10_000 * i
        metrics.update(time, position, ret, symbol=codes)
    return {k: float(v) for k, v in metrics.compute().items() if k in EXPECTED}


@pytest.mark.parametrize(
    ("metric", "key"),
    [
        (SharpeRatio, "sharpe"),
        (MaxDrawdown, "max_drawdown"),
        (NumTrades, "n_trades"),
        (Exposure, "exposure"),
        (WinRate, "win_rate"),
        (ProfitFactor, "profit_factor"),
    ],
)
def test_each_trading_metric_matches_hand_example(metric, key):
    m = metric(horizon=HORIZON, bars_per_year=BARS_PER_YEAR)
    time, position, ret, _ = hand_rows()
    m.update(time, position, ret)  # the single-number metrics need no symbol
    assert float(m.compute()) == pytest.approx(EXPECTED[key], rel=1e-5)


def test_collection_matches_hand_example():
    assert compute_all(hand_rows()) == pytest.approx(EXPECTED, rel=1e-5)


def test_equity_curve_is_staggered_book():
    time, position, ret, _ = hand_rows()
    times, equity = equity_curve(time, position, ret, HORIZON)
    assert torch.equal(times, torch.unique(time))
    assert equity.tolist() == pytest.approx(EQUITY, abs=1e-7)


def test_h_bar_return_not_counted_h_times():
    # One symbol, always long, every 5-bar forward return is 1%: 10 bars hold 2 non-overlapping periods.
    h, n = 5, 10
    time = torch.arange(n) * DAY
    position, ret = torch.ones(n), torch.full((n,), 0.01)
    _, equity = equity_curve(time, position, ret, h)
    # Sum of non-overlapping returns is 2 * 1% (each phase has 2 periods); counting all rows gives 10%.
    assert float(equity[-1]) == pytest.approx(0.02)
    out = compute_all((time, position, ret), horizon=h)
    # Constant returns: zero std in every phase -> Sharpe 0, finite; the equity never falls.
    assert out["sharpe"] == 0.0
    assert out["max_drawdown"] == 0.0
    assert out["win_rate"] == 1.0 and out["profit_factor"] == math.inf
    assert out["n_trades"] == 10 and out["exposure"] == 1.0


def test_phase_with_one_period_contributes_zero_sharpe():
    # T=3, h=2: phase 0 = [.01, .03] (std .0141421, Sharpe sqrt(2) * sqrt(100 / 2)), phase 1 = [.02] -> 0.
    time, position, ret = torch.arange(3), torch.ones(3), torch.tensor([0.01, 0.02, 0.03])
    out = compute_all((time, position, ret), horizon=2, bars_per_year=100.0)
    assert out["sharpe"] == pytest.approx(math.sqrt(2) * math.sqrt(50) / 2, rel=1e-5)


def test_horizon_one_is_plain_annualised_sharpe():
    rng = np.random.default_rng(1)
    r = rng.normal(0.001, 0.01, 50)
    out = compute_all((torch.arange(50), torch.ones(50), torch.tensor(r)), horizon=1, bars_per_year=252.0)
    assert out["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-5)


def test_nan_returns_are_dropped():
    time, position, ret, symbol = hand_rows()
    # Symbol C: NaN returns at existing timestamps (would change the mean and exposure) and at a new
    # timestamp (would add a phase period), all with positions.
    extra_t = torch.tensor([T0, T0 + 5 * DAY, T0 + 100 * DAY])
    extra = (extra_t, torch.tensor([1.0, -1.0, 1.0]), torch.full((3,), float("nan")), torch.full((3,), 2))
    assert compute_all((time, position, ret, symbol), extra) == pytest.approx(EXPECTED, rel=1e-5)
    _, equity = equity_curve(*(torch.cat(x) for x in zip((time, position, ret), extra[:3], strict=True)), HORIZON)
    assert equity.tolist() == pytest.approx(EQUITY, abs=1e-7)


def test_empty_returns_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns that compute ran before update
        assert compute_all() == dict.fromkeys(EXPECTED, 0.0)
        nan = torch.full((4,), float("nan"))
        assert compute_all((torch.arange(4), torch.ones(4), nan)) == dict.fromkeys(EXPECTED, 0.0)
        suite = MetricSuite("val", horizon=2)
        out = suite.compute()
        assert out.pop("val/bars_per_year") == 252.0
        ics = [out.pop(f"val/{k}") for k in ("ic", "rank_ic", "icir", "rank_icir")]
        assert all(math.isnan(float(v)) for v in ics)  # no cross-section to correlate across: undefined, not 0
        assert all(v == 0.0 for v in out.values())


def test_no_trades_and_no_gains():
    time = torch.arange(4)
    out = compute_all((time, torch.zeros(4), torch.full((4,), 0.01)))
    assert out == dict.fromkeys(EXPECTED, 0.0)  # flat book: no trades, zero returns
    out = compute_all((time, torch.ones(4), torch.full((4,), -0.01)))
    assert out["profit_factor"] == 0.0 and out["win_rate"] == 0.0
    assert out["max_drawdown"] == pytest.approx(0.02)  # each phase loses .01 twice


def test_two_batches_equal_one_and_timestamps_split_across_batches():
    time, position, ret, symbol = hand_rows(shuffle=False)
    # Rows are time-major (A, B per timestamp): an odd cut puts A and B of timestamp 3 in different batches.
    first = (time[:7], position[:7], ret[:7], symbol[:7])
    second = (time[7:], position[7:], ret[7:], symbol[7:])
    assert compute_all(second, first) == pytest.approx(EXPECTED, rel=1e-5)
    # Symbol-major batches: every timestamp is split across the two batches.
    a, b = slice(0, None, 2), slice(1, None, 2)
    assert compute_all(
        (time[a], position[a], ret[a], symbol[a]), (time[b], position[b], ret[b], symbol[b])
    ) == pytest.approx(EXPECTED, rel=1e-5)


def reference_trading(time, position, ret, h, bars_per_year):
    """Loop-based numpy version of the documented convention."""
    time, position, ret = np.asarray(time), np.asarray(position, float), np.asarray(ret, float)
    keep = ~np.isnan(ret)
    time, position, ret = time[keep], position[keep], ret[keep]
    pnl = position * ret
    series = np.array([pnl[time == t].mean() for t in np.unique(time)])
    sharpes, drawdowns = [], []
    for j in range(h):
        r = series[j::h]
        ok = len(r) > 1 and r.std(ddof=1) > 0
        sharpes.append(r.mean() / r.std(ddof=1) * math.sqrt(bars_per_year / h) if ok else 0.0)
        equity = np.concatenate([[0.0], np.cumsum(r)])
        drawdowns.append((np.maximum.accumulate(equity) - equity).max())
    trades = pnl[position != 0]
    gains, losses = trades[trades > 0].sum(), -trades[trades < 0].sum()
    return {
        "sharpe": np.mean(sharpes),
        "max_drawdown": np.mean(drawdowns),
        "n_trades": len(trades),
        "exposure": len(trades) / len(pnl),
        "win_rate": (trades > 0).mean(),
        "profit_factor": gains / losses,
    }


def test_random_panel_matches_loop_reference():
    rng = np.random.default_rng(0)
    n, h = 300, 3
    time = rng.integers(0, 40, n) * DAY  # ragged panel: 1..many rows per timestamp
    position = rng.integers(-1, 2, n).astype(np.float32)
    ret = rng.normal(0, 0.02, n).astype(np.float32)
    ret[rng.random(n) < 0.1] = np.nan
    batches = [
        (torch.tensor(time[s]), torch.tensor(position[s]), torch.tensor(ret[s]))
        for s in np.array_split(np.arange(n), 3)
    ]
    expected = reference_trading(time, position, ret.astype(np.float64), h, 252.0)
    assert compute_all(*batches, horizon=h, bars_per_year=252.0) == pytest.approx(expected, rel=1e-5)


# Classification: argmax = [0, 1, 2, 0], target = [0, 1, 2, 1].
PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
TARGET = torch.tensor([0, 1, 2, 1])
# short: tp 1, fp 1, fn 0 -> P .5, R 1, F1 2/3;  flat: tp 1, fp 0, fn 1 -> P 1, R .5, F1 2/3;  long: 1, 1, 1.
CLASSIFICATION = {
    "accuracy": 3 / 4,
    "balanced_accuracy": (1 + 0.5 + 1) / 3,
    "f1_macro": (2 / 3 + 2 / 3 + 1) / 3,
    "precision_short": 0.5,
    "precision_flat": 1.0,
    "precision_long": 1.0,
    "recall_short": 1.0,
    "recall_flat": 0.5,
    "recall_long": 1.0,
    "f1_short": 2 / 3,
    "f1_flat": 2 / 3,
    "f1_long": 1.0,
    "log_loss": -(math.log(0.7) + math.log(0.8) + math.log(0.5) + math.log(0.3)) / 4,
    # Top-label confidences .7 .8 .5 .6 fall in 4 different 1/15-wide bins, right, right, right, wrong:
    # ECE = (|1 - .7| + |1 - .8| + |1 - .5| + |0 - .6|) / 4.
    "ece": (0.3 + 0.2 + 0.5 + 0.6) / 4,
    # Brier: (.09 + .04 + .01) + (.01 + .04 + .01) + (.04 + .09 + .25) + (.36 + .49 + .01), over 4 rows.
    "brier": (0.14 + 0.06 + 0.38 + 0.86) / 4,
}


def test_classification_matches_hand_example():
    metrics = classification_metrics()
    metrics.update(PROBS[:1], TARGET[:1])  # two batches accumulate
    metrics.update(PROBS[1:], TARGET[1:])
    out = {k: float(v) for k, v in metrics.compute().items()}
    assert out == pytest.approx(CLASSIFICATION, rel=1e-6)
    # A later update must invalidate every cached result (the per-class wrappers included).
    metrics.update(PROBS[3:], TARGET[3:])
    assert float(metrics.compute()["precision_short"]) == pytest.approx(1 / 3)


def test_log_loss_clamps_zero_probability():
    m = LogLoss()
    m.update(torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.25, 0.25]]), torch.tensor([0, 2]))
    assert float(m.compute()) == pytest.approx((-math.log(1e-7) - math.log(0.25)) / 2, rel=1e-6)


def test_classification_matches_numpy_on_random_data():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 200).astype(np.float32)
    target = rng.integers(0, 3, 200)
    pred = probs.argmax(1)
    metrics = classification_metrics()
    for part in np.array_split(np.arange(200), 4):
        metrics.update(torch.tensor(probs[part]), torch.tensor(target[part]))
    out = {k: float(v) for k, v in metrics.compute().items()}
    for c, name in enumerate(CLASS_NAMES):
        tp = np.sum((pred == c) & (target == c))
        assert out[f"precision_{name}"] == pytest.approx(tp / np.sum(pred == c), rel=1e-5)
        assert out[f"recall_{name}"] == pytest.approx(tp / np.sum(target == c), rel=1e-5)
    assert out["accuracy"] == pytest.approx(np.mean(pred == target), rel=1e-5)
    nll = -np.log(np.clip(probs[np.arange(200), target], 1e-7, 1)).mean()
    assert out["log_loss"] == pytest.approx(nll, rel=1e-5)


def hand_suite_batch():
    """The hand panel through the suite: probs one-hot at class = position + 1, targets = that class."""
    time, position, ret, symbol = hand_rows()
    cls = position.long() + 1
    return torch.nn.functional.one_hot(cls, 3).float() * 0.8 + 0.2 / 3, cls, time, ret, symbol


def test_suite_keys_values_and_confusion_matrix():
    suite = MetricSuite("val", horizon=HORIZON, bars_per_year=BARS_PER_YEAR)
    probs, target, time, ret, symbol = hand_suite_batch()
    target = target.clone()
    target[0] = (target[0] + 1) % 3  # one wrong prediction
    suite.update(probs[:5], target[:5], time[:5], ret[:5], symbol=symbol[:5])
    suite.update(probs[5:], target[5:], time[5:], ret[5:], symbol=symbol[5:])
    out = suite.compute()
    assert set(out) == {f"val/{k}" for k in [*CLASSIFICATION, *EXPECTED, *TRADING_ADDED]}
    assert all(isinstance(v, float) for v in out.values())
    assert {k: out[f"val/{k}"] for k in EXPECTED} == pytest.approx(EXPECTED, rel=1e-5)  # position = argmax - 1
    assert out["val/accuracy"] == pytest.approx(15 / 16)
    cm = suite.confusion_matrix()
    assert cm.shape == (3, 3) and int(cm.sum()) == 16 and int(cm.trace()) == 15
    true, pred = int(target[0]), int(probs[0].argmax())
    assert int(cm[true, pred]) == 1  # rows are true classes, columns predicted ones
    with pytest.raises(ValueError, match="symbol="):
        suite.update(probs, target, time, ret)
    suite.reset()
    *args, symbol = hand_suite_batch()
    suite.update(*args, symbol=symbol)
    assert suite.compute()["val/accuracy"] == 1.0
