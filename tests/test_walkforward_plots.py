"""What a walk-forward's figures show: a panel per metric (macro-F1, log loss, Sharpe) with a bar per fold and the
stitched out-of-fold value, and the out-of-fold equity curve with a marker where each fold's block starts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.walkforward.plots import metrics_per_fold_figure, oof_equity_figure

PROBS = ["prob_short", "prob_flat", "prob_long"]


def test_metrics_per_fold_has_a_bar_per_fold_and_the_out_of_fold_line():
    per_fold = pd.DataFrame({"f1_macro": [0.31, 0.35, 0.33], "log_loss": [1.10, 1.08, 1.09],
                             "sharpe": [0.5, -1.2, 2.0]}, index=[1, 2, 3])  # fmt: skip
    oof = {"oof/f1_macro": 0.34, "oof/log_loss": 1.09, "oof/sharpe": 0.7}
    fig = metrics_per_fold_figure(per_fold, oof, "lgbm: metrics per fold")
    assert fig._suptitle.get_text() == "lgbm: metrics per fold"
    assert [ax.get_title() for ax in fig.axes] == ["macro-F1", "log loss", "Sharpe"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["macro-F1 (0..1)", "log loss (nats)", "Sharpe ratio (annualised)"]
    for ax, key in zip(fig.axes, per_fold.columns, strict=True):
        heights = [p.get_height() for p in ax.patches]
        np.testing.assert_allclose(heights, per_fold[key].to_numpy())  # one bar per fold, its own value
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), [oof[f"oof/{key}"]] * 2)  # the stitched value, across


def test_equity_curve_marks_every_fold_boundary_on_every_panel():
    times = pd.date_range("2022-01-03", periods=60, freq="D", tz="UTC")
    rng = np.random.default_rng(0)
    oof = pd.DataFrame({"datetime": np.repeat(times, 2), "symbol": ["A", "B"] * 60,
                        "fwd_return": rng.normal(0, 0.01, 120)})  # fmt: skip
    probs = rng.dirichlet([1, 1, 1], 120)
    oof[PROBS] = probs
    starts = [times[0], times[20], times[40]]
    boundaries = [int(t.value) for t in starts]
    fig = oof_equity_figure(oof, 1, boundaries, "lgbm: out-of-fold equity")
    want = sorted(t.tz_convert(None) for t in starts)
    for ax in fig.axes:
        marked = sorted(pd.Timestamp(line.get_xdata()[0]) for line in ax.get_lines()
                        if line.get_linestyle() == ":" and len(set(np.atleast_1d(line.get_xdata()))) == 1)
        # a dotted line at each fold's first test timestamp
        assert [t.tz_localize(None) if t.tzinfo else t for t in marked] == want
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "fold boundary" in labels and labels.count("fold boundary") == 1


def test_walkforward_leaderboard_chart_shows_dsr_pbo_trials_champion_and_oracle():
    from ensemble.experiments.leaderboard import DSR_LINE, walkforward_chart

    board = pd.DataFrame({
        "horizon": [5, 5, 5, 5], "status": ["done"] * 4, "model": ["lightgbm", "lstm", "ensemble_mean", "uniform"],
        "kind": ["member", "member", "blend", "baseline"], "champion": [True, False, False, False],
        "oracle": [False, True, False, False], "oof_log_loss_shared": [1.080, 1.090, 1.085, 1.0986],
        "test_log_loss_shared": [1.082, 1.079, 1.081, 1.0986], "oof_f1_macro": [0.36, 0.35, 0.355, 0.33],
        "test_f1_macro": [0.35, 0.36, 0.355, 0.33], "dsr": [0.97, 0.40, 0.62, np.nan],
        "pbo": [0.25, 0.25, 0.25, np.nan], "pbo_partitions": [16, 16, 16, np.nan], "n_trials": [7, 7, 7, np.nan]})
    fig = walkforward_chart(board)
    loss_ax, f1_ax, dsr_ax = fig.axes[:3]
    assert "7 trials counted; PBO 0.25 over 16 CSCV blocks" in dsr_ax.get_title()
    assert "deflated Sharpe ratio" in dsr_ax.get_title() and dsr_ax.get_ylabel() == "DSR (probability, 0 to 1)"
    ticks = [t.get_text() for t in dsr_ax.get_xticklabels()]
    assert ticks == ["\u2605 lightgbm (champion)", "lstm (oracle)", "ensemble_mean"]  # no bar for a guess
    np.testing.assert_allclose([p.get_height() for p in dsr_ax.patches], [0.97, 0.40, 0.62])
    assert any(np.allclose(line.get_ydata(), DSR_LINE) for line in dsr_ax.get_lines())  # the 0.95 line
    assert loss_ax.get_ylabel() == "log loss (nats per row)" and f1_ax.get_ylabel() == "macro-F1 (0 to 1)"
    assert [t.get_text() for t in loss_ax.get_xticklabels()][:2] == ticks[:2]
