"""Issue 14, what a quant hits in the first hour: the items seen through whole runs on the CLI (5, 9, 11).

- 5: ``predict --from`` matches feature columns by name, in the model's order, for trees and nets; a
  checkpoint given reordered splits is refused, or read by name with ``data.feature_order``.
- 9: tz-aware input gives tz-aware outputs that join back on (datetime, symbol) to the right labels.
- 11: every tree library gives 3 probability columns when a class never occurs in train.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panels import SPLIT_FILES, make_frames, write_frames
from test_trees_cli import cli

from ensemble.cli import main
from ensemble.training.artifacts import PROB_COLUMNS

TZ = "America/New_York"
# A net and a tree; LightGBM's config stops at once on tiny data without a small leaf size.
RUNS = {"lstm": {}, "lightgbm": {"model__init_args__min_data_in_leaf": "5"}}


def _fit(fit_args, tmp_path: Path, name: str, root: Path | None = None) -> Path:
    extra = {"data__root": str(root)} if root is not None else {}
    assert main(["fit", *fit_args(config=f"configs/{name}.yaml", epochs=2, **RUNS[name], **extra)]) == 0
    return tmp_path / "runs" / f"{name}_h5" / "version_0"


def _reversed_features(df: pd.DataFrame) -> pd.DataFrame:
    """The same frame with its feature columns f0..f3 in reverse order, moved to the front."""
    features = ["f3", "f2", "f1", "f0"]
    return df[[*features, *(c for c in df.columns if c not in features)]]


def _predict_from(export: Path, data: Path, out: Path) -> pd.DataFrame:
    assert main(["predict", "--from", str(export), "--input", str(data), "--out", str(out)]) == 0
    return pd.read_parquet(out)


# -- item 5
@pytest.mark.parametrize("name", list(RUNS))
def test_predict_from_matches_features_by_name(tmp_path, fit_args, splits, name):
    run = _fit(fit_args, tmp_path, name)
    export = tmp_path / "export"
    assert main(["export", "--run", str(run), "--out", str(export)]) == 0
    _reversed_features(pd.read_parquet(splits / SPLIT_FILES["test"])).to_parquet(tmp_path / "reordered.parquet")
    same = _predict_from(export, splits / SPLIT_FILES["test"], tmp_path / "same.parquet")
    other = _predict_from(export, tmp_path / "reordered.parquet", tmp_path / "other.parquet")
    assert same["prob_long"].nunique() > 1  # a model that uses its features: by position would differ
    pd.testing.assert_frame_equal(same, other)


@pytest.mark.parametrize("name", list(RUNS))
def test_checkpoint_reads_reordered_splits_in_its_order_when_told(tmp_path, fit_args, splits, capsys, name):
    """A checkpoint with reordered split files: refused by default (never silently by position);
    ``data.feature_order`` (the checkpoint's list) reads them by name and predicts as the run did."""
    run = _fit(fit_args, tmp_path, name)
    want = pd.read_parquet(run / "predictions" / "test.parquet")
    frames = make_frames()  # the fixture's data, feature columns reversed in every split
    root = write_frames(tmp_path / "reordered", {split: _reversed_features(df) for split, df in frames.items()})
    argv = ["test", *fit_args(config=f"configs/{name}.yaml", **RUNS[name]), "--data.root", str(root),
            "--ckpt_path", "best"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "same features in another order" in err and '--data.feature_order "[f0, f1, f2, f3]"' in err, err
    assert main([*argv, "--data.feature_order", "[f0, f1, f2, f3]"]) == 0  # the fix the message gives
    (evaluation,) = (run / "eval").glob("test-best*")
    got = pd.read_parquet(evaluation / "predictions" / "test.parquet")
    pd.testing.assert_frame_equal(got, want, atol=1e-6)


# -- item 9
def _tz_splits(root: Path) -> dict[str, pd.DataFrame]:
    frames = make_frames()
    for df in frames.values():  # the same instants, stored with a timezone that has DST
        df["datetime"] = df["datetime"].dt.tz_localize("UTC").dt.tz_convert(TZ)
    write_frames(root, frames)
    return frames


def _joins_back(preds: pd.DataFrame, source: pd.DataFrame, where: str) -> None:
    assert str(preds["datetime"].dt.tz) == TZ, where
    joined = preds.merge(source[["datetime", "symbol", "label_h5"]], on=["datetime", "symbol"], how="left",
                         validate="one_to_one", indicator=True)
    assert (joined["_merge"] == "both").all(), where  # every prediction finds its source row
    known = joined["label"].notna()
    assert known.any(), where
    np.testing.assert_array_equal(joined.loc[known, "label"].astype(int), joined.loc[known, "label_h5"].astype(int))


@pytest.mark.parametrize("name", list(RUNS))
def test_timezone_survives_every_output(tmp_path, fit_args, name):
    root = tmp_path / "tz"
    frames = _tz_splits(root)
    run = _fit(fit_args, tmp_path, name, root)
    for split in ("val", "test"):
        _joins_back(pd.read_parquet(run / "predictions" / f"{split}.parquet"), frames[split], f"{name} {split}")
    predict = ["predict", *fit_args(config=f"configs/{name}.yaml", **RUNS[name]), "--data.root", str(root),
               "--ckpt_path", "last", "--data.predict_split", "val"]
    assert main(predict) == 0
    predicted = run / "eval" / "predict-val-last" / "predictions" / "predict.parquet"
    _joins_back(pd.read_parquet(predicted), frames["val"], f"{name} predict")
    export = tmp_path / "export"
    assert main(["export", "--run", str(run), "--out", str(export)]) == 0
    test_file = root / SPLIT_FILES["test"]
    _joins_back(_predict_from(export, test_file, tmp_path / "p.parquet"), frames["test"], f"{name} --from")


def test_timezone_survives_a_blend(tmp_path, fit_args):
    root = tmp_path / "tz"
    frames = _tz_splits(root)
    runs = [str(_fit(fit_args, tmp_path, name, root)) for name in RUNS]
    assert main(["blend", "--runs", *runs, "--method", "mean", "--out", str(tmp_path / "blends")]) == 0
    (blend,) = (tmp_path / "blends").glob("*/version_0")
    for split in ("val", "test"):
        _joins_back(pd.read_parquet(blend / "predictions" / f"{split}.parquet"), frames[split], f"blend {split}")


# -- item 11
@pytest.mark.parametrize("name", ["catboost", "xgboost", "lightgbm"])
def test_class_absent_from_train_still_gives_three_probabilities(tmp_path, name):
    frames = make_frames()
    train = frames["train"]
    train["label_h5"] = train["label_h5"].replace(-1.0, 0.0)  # "short" never occurs in train
    assert (frames["val"]["label_h5"] == -1).any()  # but it does in val, where it is scored
    root = write_frames(tmp_path / "no_short", frames)
    assert main(cli(name, root, tmp_path / "runs")) == 0
    run = tmp_path / "runs" / f"{name}_h5" / "version_0"
    for split in ("val", "test"):
        preds = pd.read_parquet(run / "predictions" / f"{split}.parquet")
        probs = preds[list(PROB_COLUMNS)].to_numpy(np.float64)
        assert np.isfinite(probs).all() and (probs >= 0).all(), (name, split)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (preds["prediction"] != -1).all()  # a class it never saw is never its answer
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["val/log_loss"]) and math.isfinite(metrics["test/balanced_accuracy"])
