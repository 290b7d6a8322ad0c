"""On demo data with a learnable signal: the weighted blend against its best member, on the same rows.

Log losses here are recomputed with scikit-learn from the predictions parquets (an independent reference),
on the test rows the blends predict, which all members share; the best member is chosen on val.
"""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from ensemble.cli import main
from ensemble.data.demo import make_demo_splits
from ensemble.ensembling.blend import blend
from ensemble.experiments.leaderboard import row, write_leaderboard

KEYS = ["datetime", "symbol"]
PROBS = ["prob_short", "prob_flat", "prob_long"]
MEMBERS = {
    "lightgbm": [],
    "xgboost": [],
    "lstm": ["--data.seq_len", "10", "--trainer.max_epochs", "3", "--model.init_args.net.init_args.hidden_size", "32"],
}
# The weighted blend may give back at most this share of the best member's edge over chance (see the test).
MARGIN_SHARE = 0.25


def _loss_on(rows: pd.DataFrame, run, split: str) -> float:
    """scikit-learn's log loss of ``run``'s ``split`` predictions on exactly ``rows`` (datetime, symbol)."""
    df = rows[KEYS].merge(pd.read_parquet(run / "predictions" / f"{split}.parquet"), on=KEYS, how="left")
    assert len(df) == len(rows) and df[PROBS].notna().all().all(), f"{run} lacks some shared rows"
    probs = df[PROBS].to_numpy(np.float64)
    return log_loss(df["label"], probs / probs.sum(axis=1, keepdims=True), labels=[-1, 0, 1])


@pytest.mark.slow
def test_weighted_blend_keeps_most_of_the_best_members_edge_and_the_leaderboard_says_who_wins(tmp_path):
    root = tmp_path / "demo"
    make_demo_splits(root, n_symbols=6, n_bars=4000, seed=5, signal="strong")  # needs learnable signal
    runs = {}
    for config, extra in MEMBERS.items():
        argv = ["fit", "--config", f"configs/{config}.yaml", "--data.root", str(root),
                "--tracking.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false", *extra]
        assert main(argv) == 0
        runs[config] = tmp_path / "runs" / f"{config}_h5" / "version_0"
    rows = [row(name, 5, "member", run, "done") for name, run in runs.items()]
    blends = {m: blend(list(runs.values()), m, tmp_path / "blends") for m in ("mean", "weighted", "stacked")}
    rows += [row(f"ensemble_{m}", 5, "blend", run, "done") for m, run in blends.items()]
    board = write_leaderboard(rows, tmp_path / "board").set_index("model")

    shared = {s: pd.read_parquet(blends["mean"] / "predictions" / f"{s}.parquet") for s in ("val", "test")}
    member = {n: {s: _loss_on(shared[s], r, s) for s in shared} for n, r in runs.items()}
    best = min(member, key=lambda n: member[n]["val"])  # chosen on val
    blended = {m: _loss_on(shared["test"], r, "test") for m, r in blends.items()}
    # chance: the val class frequencies as the forecast for every test row
    prior = shared["val"]["label"].value_counts(normalize=True).reindex([-1, 0, 1]).to_numpy()
    chance = log_loss(shared["test"]["label"], np.tile(prior, (len(shared["test"]), 1)), labels=[-1, 0, 1])
    print(f"chance {chance:.4f}; members (val, test) {member}; best on val {best}; blends (test) {blended}")

    for m, loss in blended.items():  # the leaderboard's verdict is exactly these numbers
        name = f"ensemble_{m}"
        assert board.at[name, "best_member"] == best
        assert board.at[name, "test_log_loss_shared"] == pytest.approx(loss, abs=1e-5)
        assert bool(board.at[name, "beats_best_member"]) == (loss < member[best]["test"]), (m, loss, member)
    for n in runs:
        assert board.at[n, "test_log_loss_shared"] == pytest.approx(member[n]["test"], abs=1e-5)

    margin = chance - member[best]["test"]
    assert margin > 0.005, f"the best member barely beats chance ({margin:.4f}): the data has no signal to blend"
    # In-sample the optimiser must do at least as well as its best single member (a feasible point).
    assert _loss_on(shared["val"], blends["weighted"], "val") <= member[best]["val"] + 1e-6
    # Out of sample, weights fitted on val keep at least three quarters of the best member's edge over
    # chance. Measured (seed 5, 6 x 4000 bars, configs/lightgbm.yaml at lr 0.03 / 7 leaves, 2026-12-01): chance
    # 1.1055; on val XGBoost 1.0449 (best) and LightGBM 1.0463, on test XGBoost 1.0641 and LightGBM 1.0525;
    # weighted 1.0575 on test, better than the member chosen on val (the earlier LightGBM at lr 0.1: 1.0611,
    # best on val, weighted 1.0678, 15% of the edge given back). The blend falling to the mean member would give
    # back about 50%.
    assert blended["weighted"] <= member[best]["test"] + MARGIN_SHARE * margin, (blended, member, chance)
    weights = json.loads((blends["weighted"] / "blend.json").read_text())["weights"]
    print("weighted blend weights (lightgbm, xgboost, lstm):", weights)
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0)
