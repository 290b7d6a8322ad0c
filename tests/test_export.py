"""Export, MLflow registry alias, and predicting a parquet file from a fresh process."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from panels import make_frames, write_frames

from ensemble.cli import main


@pytest.fixture
def finished_run(tmp_path, fit_args):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    return tmp_path / "runs" / "lstm_h5" / "version_0"


def test_register_then_predict_in_a_fresh_process(tmp_path, splits, finished_run):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["register", "--run", str(finished_run), "--name", "demo", "--mlflow_uri", uri]) == 0
    out = tmp_path / "pred.parquet"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ensemble.cli",
            "predict",
            "--from",
            "models:/demo@production",
            "--input",
            str(splits / "test_scaled.parquet"),
            "--out",
            str(out),
            "--mlflow_uri",
            uri,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ENSEMBLE_CACHE": str(tmp_path / "cache")},  # not the user's cache
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = pd.read_parquet(out)
    run_preds = pd.read_parquet(finished_run / "predictions" / "test.parquet")
    merged = run_preds.merge(got, on=["datetime", "symbol"], suffixes=("", "_new"))
    assert len(merged) == len(run_preds)  # every labelled test row is predicted again
    for col in ("prob_short", "prob_flat", "prob_long"):
        assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6
    assert (merged.prediction == merged.prediction_new).all()
    assert len(got) >= len(run_preds)  # rows without a label are predicted too


def test_export_folder_and_feature_mismatch(tmp_path, finished_run, capsys):
    export = tmp_path / "export"
    assert main(["export", "--run", str(finished_run), "--out", str(export)]) == 0
    for rel in ("model/model.ckpt", "config.yaml", "metadata.json", "metrics.json"):
        assert (export / rel).is_file(), rel
    frames = make_frames()
    frames["test"] = frames["test"].rename(columns={"f2": "f2_renamed"})
    other = write_frames(tmp_path / "other", frames)
    argv = [
        "predict",
        "--from",
        str(export),
        "--input",
        str(other / "test_scaled.parquet"),
        "--out",
        str(tmp_path / "p.parquet"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing ['f2']" in err and "extra ['f2_renamed']" in err
    unlabelled = frames["test"].drop(columns=[c for c in frames["test"] if c.startswith(("label_", "fwd_"))])
    unlabelled = unlabelled.rename(columns={"f2_renamed": "f2"})
    unlabelled.to_parquet(tmp_path / "new.parquet")
    assert main([*argv[:3], "--input", str(tmp_path / "new.parquet"), "--out", str(tmp_path / "p.parquet")]) == 0
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert pred["label"].isna().all() and pred["prob_long"].notna().all()


def test_tree_export_predicts_like_its_run(tmp_path, splits):
    argv = ["fit", "--config", "configs/lightgbm.yaml", "--data.root", str(splits), "--trainer.max_epochs", "2",
            "--tracking.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"]
    assert main(argv) == 0
    run = tmp_path / "runs" / "lightgbm_h5" / "version_0"
    (run / "checkpoints" / "best.0123abcd.txt").write_text("a staged file a killed run left behind")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    exported = sorted(p.name for p in (tmp_path / "export" / "model").iterdir())
    assert exported == ["best.meta.json", "best.txt"]  # LightGBM's native text and its sidecar, no debris
    out = tmp_path / "pred.parquet"
    assert main(["predict", "--from", str(tmp_path / "export"), "--input", str(splits / "test_scaled.parquet"),
                 "--out", str(out)]) == 0
    merged = pd.read_parquet(run / "predictions" / "test.parquet").merge(
        pd.read_parquet(out), on=["datetime", "symbol"], suffixes=("", "_new"))
    assert (merged.prob_long - merged.prob_long_new).abs().max() < 1e-6
