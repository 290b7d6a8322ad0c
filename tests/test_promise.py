"""The package's promise, on the demo data (issue 18): an experiment of LightGBM, XGBoost, LSTM and GRU, each
walked forward over 4 folds at h5, then blended on their out-of-fold predictions.

- the ``caruana`` or ``stacked`` blend's test log loss is strictly below every member's;
- the champion, chosen by out-of-fold log loss alone, is no worse on test than the member that is best on
  test (a choice made with hindsight) plus 0.002.

Sizing, and why: the demo generator at 4 symbols x 3920 bars (a reduced size: 2,548 train + val bars a
symbol, as 3000 bars gave before the demo's test split grew to 35%), with its ``strong`` signal.
At the default, realistic signal no model beats the class prior out of fold at a size a test can afford
(docs/benchmarks.md, "Checkpoint monitor": not even at the full size), so every member is a guess and "beats
every member" would be a coin toss, not a test. The nets are cut down (10-bar windows, 16 hidden units,
3 epochs) to keep this near a minute of CPU per member; the trees run their bundled configs. Log losses are
compared on the test rows every candidate predicted (``test_log_loss_shared``), as the champion record is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ensemble.cli import main
from ensemble.data.demo import make_demo_splits

CONFIGS = str(Path(__file__).parents[1] / "configs")
NET = ["--data.seq_len", "10", "--model.init_args.net.init_args.hidden_size", "16", "--trainer.max_epochs", "3"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("promise")
    make_demo_splits(root / "demo", n_symbols=4, n_bars=3920, signal="strong")
    spec = {"name": "promise", "models": ["lightgbm", "xgboost", "lstm", "gru"], "horizons": [5],
            "data_root": str(root / "demo"), "configs_dir": CONFIGS, "out": str(root / "exp"),
            "walkforward": {"folds": 4}, "blends": ["caruana", "stacked", "best"],
            "model_args": {"lstm": NET, "gru": NET}, "fit_args": ["--trainer.enable_model_summary", "false"],
            "launcher": {"kind": "local", "workers": 2}, "threads": 1}  # fmt: skip
    (root / "exp.yaml").write_text(yaml.safe_dump(spec))
    assert main(["experiment", "--config", str(root / "exp.yaml")]) == 0
    return root / "exp"


def test_a_blend_beats_every_member_on_test(experiment):
    board = pd.read_csv(experiment / "leaderboard.csv")
    members = board[board.kind == "walkforward"]
    assert sorted(members.model) == ["gru", "lightgbm", "lstm", "xgboost"] and (members.status == "done").all()
    assert (members.folds == 4).all()
    blends = board[board.model.isin(["ensemble_caruana", "ensemble_stacked"])].set_index("model")
    assert (blends.fit_on == "oof").all()
    best_member = members.test_log_loss_shared.min()
    assert blends.test_log_loss_shared.min() < best_member, (blends.test_log_loss_shared.to_dict(), best_member)


def test_the_champion_is_within_0_002_of_the_best_member_on_test(experiment):
    record = json.loads((experiment / "champion_h5.json").read_text())
    assert record["metric"] == "oof/log_loss"
    members = [c for c in record["candidates"] if c["kind"] == "member"]
    oracle = min(c["test_log_loss"] for c in members)  # the best member on test, chosen with hindsight
    assert record["oracle"]["test_log_loss"] == pytest.approx(oracle)
    chosen = min(record["candidates"], key=lambda c: c["oof_log_loss"])  # out of fold only: no test row
    assert record["champion"]["name"] == chosen["name"]
    assert record["champion_test_log_loss"] <= oracle + 0.002
