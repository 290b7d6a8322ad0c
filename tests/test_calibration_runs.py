"""Temperature scaling in runs: it fixes an over-confident model without moving its arg-max, it is stored in the
checkpoint and the export, and every way of evaluating or predicting a checkpoint applies it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread
from sklearn.metrics import f1_score, log_loss

from ensemble.cli import main
from ensemble.metrics.calibration import (
    calibrate_logits,
    calibrate_probs,
    expected_calibration_error,
    fit_temperature,
    keep_argmax,
)
from ensemble.training.net_checkpoints import read_net_checkpoint, write_net_temperature
from ensemble.training.trees.checkpoint import write_temperature

PROBS = ["prob_short", "prob_flat", "prob_long"]


def over_confident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (a calibrated model), and the probabilities softmax(3 z): logits x3."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, (n, 3))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    sharp = np.exp(3 * z) / np.exp(3 * z).sum(axis=1, keepdims=True)
    return sharp, y


def test_over_confident_model_is_fixed_without_moving_the_arg_max():
    val, y_val = over_confident(4000, seed=1)
    test, y_test = over_confident(4000, seed=2)
    temperature = fit_temperature(val, y_val)
    assert temperature == pytest.approx(3.0, rel=0.1)  # the x3 of the logits, found on val
    calibrated = calibrate_probs(test, temperature)
    before, after = expected_calibration_error(test, y_test), expected_calibration_error(calibrated, y_test)
    assert after <= before / 2
    assert log_loss(y_test, calibrated) < log_loss(y_test, test)
    assert np.array_equal(calibrated.argmax(axis=1), test.argmax(axis=1))
    assert f1_score(y_test, calibrated.argmax(1), average="macro") == f1_score(y_test, test.argmax(1), average="macro")


def test_expected_calibration_error_matches_a_hand_worked_table():
    # 4 rows: confidences 0.9, 0.9 (one right), 0.5, 0.5 (both right) -> |0.9 - 0.5| * 2/4 + |0.5 - 1| * 2/4
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, y) == pytest.approx(0.4 * 0.5 + 0.5 * 0.5)


def test_a_tie_made_by_rounding_keeps_the_uncalibrated_arg_max():
    q = np.array([[0.4, 0.4, 0.2], [0.2, 0.5, 0.3]], dtype=np.float32)
    kept = keep_argmax(q, np.array([1, 1]))
    assert kept.argmax(axis=1).tolist() == [1, 1]
    assert kept[0, 0] == np.nextafter(np.float32(0.4), np.float32(0))  # one unit in the last place, no more
    assert np.array_equal(kept[1], q[1])
    logits = torch.tensor([[0.0, 1e-6, 0.0]])  # class 1 wins by a hair; at T = 1000 float32 rounds it away
    assert (logits / 1000).softmax(-1).argmax(-1).item() == 0  # what an unguarded scaling would predict
    assert calibrate_logits(logits, 1000.0).argmax(-1).item() == 1
    assert torch.equal(calibrate_logits(logits, 1.0), logits.softmax(-1))  # T = 1: bit for bit


def _tree_fit(splits: Path, save_dir: Path, *extra: str) -> Path:
    argv = ["fit", "--config", "configs/lightgbm.yaml", "--data.root", str(splits), "--trainer.max_epochs", "2",
            "--tracking.save_dir", str(save_dir), "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    assert main(argv) == 0
    return save_dir / "lightgbm_h5" / "version_0"


def _predict_from_export(run: Path, splits: Path, tmp_path: Path) -> pd.DataFrame:
    export, out = tmp_path / "export", tmp_path / "pred.parquet"
    assert main(["export", "--run", str(run), "--out", str(export)]) == 0
    assert main(["predict", "--from", str(export), "--input", str(splits / "test_scaled.parquet"),
                 "--out", str(out)]) == 0  # fmt: skip
    merged = pd.read_parquet(run / "predictions" / "test.parquet").merge(
        pd.read_parquet(out), on=["datetime", "symbol"], suffixes=("", "_new"))  # fmt: skip
    assert len(merged) == len(pd.read_parquet(run / "predictions" / "test.parquet"))
    return merged


def _non_trivial_png(path: Path) -> None:
    assert path.stat().st_size > 10_000
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.05  # drawn, not blank


def test_tree_run_is_calibrated_stored_exported_and_reevaluated(splits, tmp_path, capsys):
    run = _tree_fit(splits, tmp_path / "on")
    raw = _tree_fit(splits, tmp_path / "off", "--calibrate", "false")
    metrics, raw_metrics = (json.loads((r / "metrics.json").read_text()) for r in (run, raw))
    temperature = metrics["calibration/temperature"]
    assert temperature != 1.0 and raw_metrics["calibration/temperature"] == 1.0
    assert metrics["calibration/val_log_loss_after"] < metrics["calibration/val_log_loss_before"]
    assert metrics["calibration/val_log_loss_after"] == metrics["val/log_loss"]
    assert metrics["calibration/val_log_loss_before"] == pytest.approx(raw_metrics["val/log_loss"], abs=1e-6)
    sidecar = json.loads((run / "checkpoints" / "best.meta.json").read_text())
    assert sidecar["calibration"] == {"temperature": temperature}
    for split in ("val", "test"):
        on, off = (pd.read_parquet(r / "predictions" / f"{split}.parquet") for r in (run, raw))
        assert on["prediction"].equals(off["prediction"])  # the arg-max, bit for bit
        assert metrics[f"{split}/f1_macro"] == raw_metrics[f"{split}/f1_macro"]
        assert not np.allclose(on[PROBS], off[PROBS])  # and the probabilities did change
        _non_trivial_png(run / "plots" / f"{split}_reliability.png")
    merged = _predict_from_export(run, splits, tmp_path)
    assert json.loads((tmp_path / "export" / "metadata.json").read_text())["temperature"] == temperature
    for col in PROBS:
        assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6
    assert (merged.prediction == merged.prediction_new).all()

    test = ["--config", "configs/lightgbm.yaml", "--data.root", str(splits),
            "--tracking.save_dir", str(tmp_path / "on")]  # fmt: skip
    assert main(["test", *test, "--ckpt_path", "best"]) == 0
    again = json.loads((run / "eval" / "test-best" / "metrics.json").read_text())
    assert again["test/log_loss"] == pytest.approx(metrics["test/log_loss"], abs=1e-7)
    assert again["calibration/temperature"] == temperature
    write_temperature(run / "checkpoints" / "best.meta.json", None)  # a checkpoint from before calibration
    capsys.readouterr()
    assert main(["validate", *test, "--ckpt_path", "best"]) == 0
    assert "carries no calibration temperature" in capsys.readouterr().out
    old = json.loads((run / "eval" / "val-best" / "metrics.json").read_text())
    assert old["calibration/temperature"] == 1.0
    assert old["val/log_loss"] == pytest.approx(metrics["calibration/val_log_loss_before"], abs=1e-7)


def test_net_run_is_calibrated_stored_exported_and_reevaluated(tmp_path, splits, fit_args, capsys):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    run = tmp_path / "runs" / "lstm_h5" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    temperature = metrics["calibration/temperature"]
    assert temperature != 1.0
    assert metrics["calibration/val_log_loss_after"] <= metrics["calibration/val_log_loss_before"]
    (best,) = (run / "checkpoints").glob("best*.ckpt")
    assert read_net_checkpoint(best)["calibration"] == {"temperature": temperature}
    _non_trivial_png(run / "plots" / "test_reliability.png")
    merged = _predict_from_export(run, splits, tmp_path)
    for col in PROBS:
        assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6
    assert (merged.prediction == merged.prediction_new).all()

    args = fit_args(epochs=1)
    assert main(["test", *args, "--ckpt_path", str(best)]) == 0
    (again,) = (run / "eval").glob("test-best*/metrics.json")
    again = json.loads(again.read_text())
    assert again["test/log_loss"] == pytest.approx(metrics["test/log_loss"], abs=1e-6)
    assert again["test/f1_macro"] == metrics["test/f1_macro"]
    write_net_temperature(best, None)  # a checkpoint from before calibration
    assert "calibration" not in read_net_checkpoint(best)
    capsys.readouterr()
    assert main(["validate", *args, "--ckpt_path", str(best)]) == 0
    assert "carries no calibration temperature" in capsys.readouterr().out
    (old,) = (run / "eval").glob("val-best*/metrics.json")
    old = json.loads(old.read_text())
    assert old["calibration/temperature"] == 1.0
    assert old["val/log_loss"] == pytest.approx(metrics["calibration/val_log_loss_before"], abs=1e-6)
    assert old["val/f1_macro"] == metrics["val/f1_macro"]  # calibration never moved the arg-max
