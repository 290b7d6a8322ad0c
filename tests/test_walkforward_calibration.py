"""A walk-forward's final model is calibrated on the folds' out-of-fold rows, not on its own val split: its stored
temperature is the one fitted on the stitched, uncalibrated out-of-fold probabilities, and its export applies it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panels import make_frames, write_frames

from ensemble.cli import main
from ensemble.metrics.calibration import apply_temperature, fit_temperature

ROOT = Path(__file__).parents[1]
PROBS = ["prob_short", "prob_flat", "prob_long"]


def _learnable_splits(root: Path) -> Path:
    """Tiny splits whose h5 label follows feature f0 through noise: the trees learn it, with a confidence that
    temperature scaling can correct (on pure-noise labels every fitted T sits at its upper bound)."""
    frames = make_frames(rows=(240, 80, 80), seed=3)
    rng = np.random.default_rng(3)
    for df in frames.values():
        score = df["f0"] + rng.normal(0.0, 0.7, len(df))
        label = np.where(score > 0.5, 1.0, np.where(score < -0.5, -1.0, 0.0))
        df["label_h5"] = np.where(df["label_h5"].isna(), np.nan, label)
    return write_frames(root, frames)


def test_final_model_temperature_is_fitted_on_the_out_of_fold_rows(tmp_path):
    out, splits = tmp_path / "wf", _learnable_splits(tmp_path / "splits")
    assert main(["walkforward", "--config", str(ROOT / "configs" / "lightgbm.yaml"), "--data.root", str(splits),
                 "--wf.out", str(out), "--wf.folds", "3", "--wf.val_bars", "4", "--wf.refit_every", "2",
                 "--trainer.max_epochs", "2", "--trainer.enable_model_summary", "false",
                 "--trainer.enable_progress_bar", "false", "--model.init_args.min_data_in_leaf", "5"]) == 0  # fmt: skip
    folds = pd.read_csv(out / "folds.csv")
    oof = pd.read_parquet(out / "oof.parquet")
    # by hand: undo each fold's own T (fold 2 reused fold 1's model, and its T), then fit one T on all the rows
    uncalibrated = []
    for fold in folds.itertuples():
        t_fold = json.loads((out / fold.run_dir / "metrics.json").read_text())["calibration/temperature"]
        part = oof[oof.fold == fold.fold]
        uncalibrated.append(apply_temperature(part[PROBS].to_numpy(np.float64), 1.0 / t_fold))
        if fold.fold == 2:
            assert t_fold == json.loads((out / folds.run_dir[0] / "metrics.json").read_text())[
                "calibration/temperature"]  # fmt: skip
    expected = fit_temperature(np.vstack(uncalibrated), oof.sort_values("fold", kind="stable")["label"] + 1)

    (final,) = (out / "runs" / "final").iterdir()
    sidecar = json.loads((final / "checkpoints" / "best.meta.json").read_text())
    assert 0.05 < expected < 20  # an interior optimum, not a bound
    assert sidecar["calibration"]["temperature"] == pytest.approx(expected, rel=1e-9)
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["calibration/fitted_on"] == "oof" and metrics["calibration/fit_rows"] == len(oof)
    assert metrics["calibration/temperature"] == sidecar["calibration"]["temperature"]
    val_t = fit_temperature(pd.read_parquet(final / "predictions" / "val.parquet")[PROBS].to_numpy(np.float64),
                            pd.read_parquet(final / "predictions" / "val.parquet")["label"].to_numpy() + 1)
    assert val_t != pytest.approx(expected, rel=1e-3)  # not what its own val split would have given

    # the walk-forward's test predictions are the final model's, calibrated with that T; its export applies it
    test = pd.read_parquet(out / "predictions" / "test.parquet")
    pd.testing.assert_frame_equal(test, pd.read_parquet(final / "predictions" / "test.parquet"))
    export, predicted = tmp_path / "export", tmp_path / "pred.parquet"
    assert main(["export", "--run", str(final), "--out", str(export)]) == 0
    assert json.loads((export / "metadata.json").read_text())["temperature"] == metrics["calibration/temperature"]
    assert main(["predict", "--from", str(export), "--input", str(splits / "test_scaled.parquet"),
                 "--out", str(predicted)]) == 0  # fmt: skip
    merged = test.merge(pd.read_parquet(predicted), on=["datetime", "symbol"], suffixes=("", "_new"))
    assert len(merged) == len(test)
    for col in PROBS:
        assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6
    assert (merged.prediction == merged.prediction_new).all()
