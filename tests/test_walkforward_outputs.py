"""A walk-forward's outputs as a user reads them back: every parquet keeps the data's timezone and joins back to
its source rows one to one, and a fold run's export (its in-fold normalisation inside) predicts as the fold did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from panels import SPLIT_FILES, make_frames, write_frames

from ensemble.cli import main

ROOT = Path(__file__).parents[1]
TZ = "America/New_York"  # has DST: an output that dropped or shifted the zone would not join back
PROBS = ["prob_short", "prob_flat", "prob_long"]
FAST = ["--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--wf.folds", "2",
        "--data.normalize", "zscore", "--quiet"]  # fmt: skip


def _joins_back(preds: pd.DataFrame, source: pd.DataFrame, where: str) -> None:
    assert str(preds["datetime"].dt.tz) == TZ, where
    joined = preds.merge(source[["datetime", "symbol", "label_h5"]], on=["datetime", "symbol"], how="left",
                         validate="one_to_one", indicator=True)  # fmt: skip
    assert (joined["_merge"] == "both").all(), where  # every prediction finds its own source row
    np.testing.assert_array_equal(joined["label"].astype(int), joined["label_h5"].astype(int), err_msg=where)


def test_walkforward_outputs_keep_the_timezone_and_a_fold_export_predicts_as_the_fold(tmp_path):
    frames = make_frames()
    for df in frames.values():
        df["datetime"] = df["datetime"].dt.tz_localize("UTC").dt.tz_convert(TZ)
        df["f0"] = df["f0"] * 1000.0 + 50.0  # far from z-scored: an export that lost its statistics predicts other
    root = write_frames(tmp_path / "tz", frames)
    source = pd.concat(frames.values(), ignore_index=True)
    members = []
    for name in ("lightgbm", "xgboost"):
        out = tmp_path / f"wf_{name}"
        assert main(["walkforward", "--config", str(ROOT / "configs" / f"{name}.yaml"), "--data.root", str(root),
                     "--wf.out", str(out), *FAST]) == 0  # fmt: skip
        members.append(str(out))
        _joins_back(pd.read_parquet(out / "oof.parquet"), source, f"{name} oof")
        _joins_back(pd.read_parquet(out / "predictions" / "test.parquet"), frames["test"], f"{name} test")

    # the last fold's run, exported, then predicted from the raw split files by a user
    fold = pd.read_csv(Path(members[0]) / "folds.csv").iloc[-1]
    run = Path(members[0]) / fold.run_dir  # relative to the walk-forward folder
    export = tmp_path / "fold_export"
    assert main(["export", "--run", str(run), "--out", str(export)]) == 0
    stats = json.loads((export / "metadata.json").read_text())["normalizer"]
    centre, scale = stats["center"]["*"][0], stats["scale"]["*"][0]  # f0 ~ 50 + 1000 N(0, 1), fitted in the fold
    assert abs(centre - 50.0) < 300.0 and 700.0 < scale < 1300.0
    predicted = []
    for split in ("train", "val"):
        out_file = tmp_path / f"p_{split}.parquet"
        assert main(["predict", "--from", str(export), "--input", str(root / SPLIT_FILES[split]),
                     "--out", str(out_file)]) == 0  # fmt: skip
        predicted.append(pd.read_parquet(out_file))
    own = pd.read_parquet(run / "predictions" / "test.parquet")  # the fold's block, as the fold predicted it
    both = own.merge(pd.concat(predicted), on=["datetime", "symbol"], suffixes=("", "_from"), validate="one_to_one")
    assert len(both) == len(own) > 0
    for col in PROBS:
        np.testing.assert_allclose(both[col], both[f"{col}_from"], atol=1e-6, err_msg=col)

    # an out-of-fold blend of the two walk-forwards keeps the timezone in its oof rows and on test
    assert main(["blend", "--runs", *members, "--method", "mean", "--out", str(tmp_path / "blends"), "--quiet"]) == 0
    (blend,) = (tmp_path / "blends").glob("*/version_0")
    _joins_back(pd.read_parquet(blend / "oof.parquet"), source, "blend oof")
    _joins_back(pd.read_parquet(blend / "predictions" / "test.parquet"), frames["test"], "blend test")
