"""The leaderboard on hand-made runs: same-row comparison, choice on val, test only reported.

Every run predicts label "long" on each row with a chosen probability p for it, so each log loss is
worked by hand: the mean of -ln(p) over the rows compared.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ensemble.experiments.leaderboard import NOTE, row, shared_row_log_loss, write_leaderboard

TIMES = pd.date_range("2023-01-02", periods=6, freq="D")


TRAIN_LABELS = [-1, -1, 0, 0, 0, 0, 1, 1]  # the class_prior baseline's shares: 1/4, 1/2, 1/4


def _train_split(root: Path) -> Path:
    """The train split the runs were trained on: only its labels matter (the class_prior baseline)."""
    data = root / "data"
    if not (data / "train_scaled.parquet").is_file():
        data.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"datetime": pd.date_range("2022-01-03", periods=8, freq="D"), "symbol": "X", "f0": 0.5,
                      "label_h5": TRAIN_LABELS, "fwd_return_h5": 0.01}).to_parquet(data / "train_scaled.parquet")
    return data


def _run(root: Path, name: str, p: dict[str, list[float]], members: list[Path] | None = None) -> Path:
    """A finished run whose p[split][i] is its probability of the true class on row i; None: no prediction."""
    run = root / name / "version_0"
    (run / "predictions").mkdir(parents=True)
    data = {"horizon": 5, "bars_per_year": 252} | ({"root": str(_train_split(root))} if members is None else {})
    (run / "config.yaml").write_text(json.dumps({"data": data}))  # JSON is YAML; a blend's records no data root
    metrics = {}
    for split, probs in p.items():
        kept = [(t, q) for t, q in zip(TIMES, probs, strict=True) if q is not None]
        pd.DataFrame({
            "datetime": [t for t, _ in kept], "symbol": "X", "label": 1,
            "prob_short": [(1 - q) / 2 for _, q in kept], "prob_flat": [(1 - q) / 2 for _, q in kept],
            "prob_long": [q for _, q in kept], "prediction": 1, "fwd_return": 0.01,
        }).to_parquet(run / "predictions" / f"{split}.parquet")
        metrics[f"{split}/log_loss"] = sum(-math.log(q) for _, q in kept) / len(kept)  # on its OWN rows
        metrics[f"{split}/f1_macro"] = 0.5
    (run / "metrics.json").write_text(json.dumps(metrics))
    if members is not None:
        (run / "blend.json").write_text(json.dumps({"members": [str(m) for m in members]}))
    return run


def _flat(p: float, first: float | None = None) -> list[float | None]:
    return [first, *[p] * 5]  # row 0 is predicted only by a member with a shorter window


@pytest.fixture
def members(tmp_path):
    # lightgbm: seq_len 1, predicts row 0 too, and badly there (p=0.01); 0.5 on the shared rows
    lgb = _run(tmp_path, "lightgbm", {"val": _flat(0.5, 0.01), "test": _flat(0.5, 0.01)})
    # lstm: a longer window, rows 1..5 only; worse than lightgbm on val, better on test
    lstm = _run(tmp_path, "lstm", {"val": _flat(0.4), "test": _flat(0.6)})
    return tmp_path, lgb, lstm


def _board(tmp_path, lgb, lstm, blend, failed=False) -> pd.DataFrame:
    rows = [row("lightgbm", 5, "member", lgb, "done"), row("lstm", 5, "member", lstm, "done")]
    if failed:  # the member that would have been best crashed: no metrics, no predictions, not in the blend
        rows.append(row("catboost", 5, "member", None, "failed", "boom"))
    rows.append(row("ensemble_weighted", 5, "blend", blend, "done"))
    return write_leaderboard(rows, tmp_path / "out").set_index("model")


@pytest.mark.parametrize(
    ("blend_test", "beats"),
    [
        (0.5, False),   # the blend IS lightgbm (weights [1, 5e-16]): a tie on the same rows, not a win
        (0.55, True),   # better than lightgbm (the best member on val), though worse than lstm on test
        (0.45, False),  # worse
    ],
)
def test_blend_is_judged_against_the_member_chosen_on_val_on_the_same_rows(members, blend_test, beats):
    root, lgb, lstm = members
    blend = _run(root, "blend", {"val": _flat(0.7), "test": _flat(blend_test)}, members=[lgb, lstm])
    board = _board(root, lgb, lstm, blend)
    # on its own rows lightgbm's test log loss counts its bad row 0: (-ln 0.01 + 5 (-ln 0.5)) / 6 = 1.3452,
    # so the old same-metrics.json comparison called even the tie a win
    assert board.at["lightgbm", "test_log_loss"] == pytest.approx(1.3452, abs=1e-4)
    assert board.at["lightgbm", "test_log_loss_shared"] == pytest.approx(-math.log(0.5))  # rows 1..5 only
    assert board.at["lightgbm", "val_log_loss_shared"] == pytest.approx(-math.log(0.5))
    assert board.at["lstm", "val_log_loss_shared"] == pytest.approx(-math.log(0.4))
    assert board.at["ensemble_weighted", "test_log_loss_shared"] == pytest.approx(-math.log(blend_test))
    assert board.at["ensemble_weighted", "best_member"] == "lightgbm"  # val: 0.693 < 0.916; on test lstm is better
    assert bool(board.at["ensemble_weighted", "beats_best_member"]) is beats
    assert not board.loc[["lightgbm", "lstm"], "beats_best_member"].any()


def test_leaderboard_ranks_on_val_marks_in_sample_and_survives_a_failed_member(members, tmp_path):
    root, lgb, lstm = members
    blend = _run(root, "blend", {"val": _flat(0.7), "test": _flat(0.55)}, members=[lgb, lstm])
    board = _board(tmp_path, lgb, lstm, blend, failed=True)
    # val on shared rows: blend 0.357 < lightgbm 0.693 < lstm 0.916 < uniform ln 3 < class_prior ln 4 (every
    # label is long, the train share of long is 1/4) = random_prior (the prior's log loss); the failed run last
    assert list(board.index[:4]) == ["ensemble_weighted", "lightgbm", "lstm", "uniform"]
    assert set(board.index[4:6]) == {"class_prior", "random_prior"} and board.index[6] == "catboost"
    assert board.val_in_sample.tolist() == [True] + [False] * 6
    assert board.at["ensemble_weighted", "best_member"] == "lightgbm"
    # random in proportion q = (1/4, 1/2, 1/4) on all-long rows f = (0, 0, 1): F1_long = 2 q / (1 + q) = 0.4, the
    # others 0, macro 0.4 / 3; the class prior always says flat: macro-F1 0
    assert board.at["random_prior", "val_f1_macro"] == pytest.approx(0.4 / 3)
    assert board.at["random_prior", "val_log_loss"] == pytest.approx(math.log(4))
    assert board.at["class_prior", "val_f1_macro"] == pytest.approx(0.0)
    on_disk = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert on_disk.beats_best_member.tolist() == [True] + [False] * 6
    assert on_disk.at[6, "status"] == "failed" and pd.isna(on_disk.at[6, "val_log_loss_shared"])
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert NOTE in md and "in-sample" in md
    assert (tmp_path / "out" / "leaderboard.png").is_file()


def test_shared_rows_and_disagreeing_labels(members):
    root, lgb, _ = members
    short = _run(root, "short", {"val": [None, None, 0.5, 0.25, 0.5, 0.25], "test": _flat(0.5)})
    scores = shared_row_log_loss([str(lgb), str(short)], "val")  # rows 2..5 only
    assert scores[str(lgb)] == pytest.approx(-math.log(0.5))
    assert scores[str(short)] == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
    path = short / "predictions" / "val.parquet"
    pd.read_parquet(path).assign(label=0).to_parquet(path)
    with pytest.raises(ValueError, match=f"{short}: its val labels differ"):
        shared_row_log_loss([str(lgb), str(short)], "val")


def test_terminal_board_shows_net_sharpe_beside_gross():
    from ensemble.experiments.leaderboard import terminal_table

    board = pd.DataFrame([{"model": "lightgbm", "horizon": 5, "kind": "member", "status": "done",
                           "test_sharpe": 1.2345, "test_sharpe_net": -0.4321, "test_rank_ic": 0.0567, "run_dir": "x"}])
    header, *rest = terminal_table(board).splitlines()
    assert "test_sharpe" in header and "test_sharpe_net" in header
    assert header.index("test_sharpe_net") > header.index("test_sharpe ")  # net right after gross
    assert header.index("test_rank_ic") > header.index("test_sharpe_net")  # then the signal's rank IC
    assert "-0.4321" in "\n".join(rest) and "1.2345" in "\n".join(rest) and "0.0567" in "\n".join(rest)


def test_the_chart_legends_never_cover_a_bar():
    from ensemble.experiments.leaderboard import chart

    rng = np.random.default_rng(0)
    rows = [{"model": m, "horizon": 5, "kind": k, "status": "done", "val_f1_macro": 0.36 + 0.02 * rng.random(),
             "test_f1_macro": 0.36, "val_log_loss_shared": 1.09, "test_log_loss_shared": 1.093,
             "val_ic": 0.08, "test_ic": 0.07 + 0.01 * rng.random()}
            for m, k in (("lightgbm", "member"), ("xgboost", "member"), ("lstm", "member"), ("gru", "member"),
                         ("ensemble_caruana", "blend"), ("uniform", "baseline"))]  # fmt: skip
    fig = chart(pd.DataFrame(rows))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_height()]
        assert bars and not any(legend.overlaps(bar) for bar in bars), ax.get_title()
