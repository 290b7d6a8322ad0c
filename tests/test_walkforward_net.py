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
        assert (Path(run) / "predictions" / "test.parquet").is_file()
        assert list((Path(run) / "checkpoints").glob("*.ckpt"))
    assert "oof/f1_macro" in json.loads((out / "metrics.json").read_text())
