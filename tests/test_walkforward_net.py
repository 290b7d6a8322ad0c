"""A net walks forward too: an LSTM with 5-bar windows over 2 folds, each fold an ordinary Lightning run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ensemble.cli import main


def test_lstm_walkforward(tmp_path, fit_args):
    out = tmp_path / "wf"
    args = fit_args(epochs=1, **{"model__init_args__net__init_args__hidden_size": 8})
    assert main(["walkforward", *args, "--wf.folds", "2", "--wf.val_bars", "3", "--wf.out", str(out)]) == 0
    folds = pd.read_csv(out / "folds.csv")
    oof = pd.read_parquet(out / "oof.parquet")
    assert len(oof) == folds.test_rows.sum() and not oof.duplicated(["datetime", "symbol"]).any()
    for run in folds.run_dir:  # the usual artifacts of a net run, its checkpoints included
        assert (out / run / "predictions" / "test.parquet").is_file()
        assert list((out / run / "checkpoints").glob("*.ckpt"))
    assert "oof/f1_macro" in json.loads((out / "metrics.json").read_text())


def test_tree_and_net_walk_the_same_folds_and_blend(tmp_path, fit_args, splits, capsys):
    """Folds are cut on the labelled rows, not on each model's window: an LSTM with 5-bar windows and LightGBM with
    one bar get the same test blocks, so ``ensemble blend --runs`` fits on their shared out-of-fold rows."""
    lstm, tree = tmp_path / "lstm", tmp_path / "tree"
    args = fit_args(epochs=1, **{"model__init_args__net__init_args__hidden_size": 8})
    wf = ["--wf.folds", "3", "--wf.val_bars", "3"]
    assert main(["walkforward", *args, *wf, "--wf.out", str(lstm)]) == 0
    tree_args = ["--config", str(Path(__file__).parents[1] / "configs" / "lightgbm.yaml"), "--data.root", str(splits),
                 "--trainer.max_epochs", "2", "--model.init_args.min_data_in_leaf", "5"]  # fmt: skip
    assert main(["walkforward", *tree_args, *wf, "--wf.out", str(tree)]) == 0
    columns = ["fold", "test_start", "test_end"]
    pd.testing.assert_frame_equal(pd.read_csv(lstm / "folds.csv")[columns], pd.read_csv(tree / "folds.csv")[columns])
    capsys.readouterr()
    assert main(["blend", "--runs", str(tree), str(lstm), "--method", "weighted", "--out", str(tmp_path / "b")]) == 0
    (run,) = (tmp_path / "b" / "ensemble_weighted_h5").iterdir()
    blended = pd.read_parquet(run / "oof.parquet")
    record = json.loads((run / "blend.json").read_text())
    assert sorted(blended.fold.unique()) == [2, 3] and record["fit_on"] == "oof"
    assert record["member_final_runs"] == [str(tree / "runs" / "final" / "version_0"),
                                           str(lstm / "runs" / "final" / "version_0")]  # fmt: skip
    assert "test/log_loss" in json.loads((run / "metrics.json").read_text())
