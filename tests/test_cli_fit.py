"""`ensemble fit|validate|test|predict` end to end on tiny data: artifacts, resume, bad input."""

import json

import pandas as pd
import pytest
import torch
import yaml

from ensemble.cli import main

PRED_COLUMNS = ["datetime", "symbol", "label", "prob_short", "prob_flat", "prob_long", "prediction", "fwd_return"]
METRIC_NAMES = {
    "accuracy", "balanced_accuracy", "f1_macro", "log_loss", "loss", "sharpe", "win_rate", "max_drawdown",
    "profit_factor", "n_trades", "exposure", "precision_short", "recall_flat", "f1_long",
}


def _run_dir(tmp_path, name="lstm_h5", version=0):
    return tmp_path / "runs" / name / f"version_{version}"


def test_fit_writes_the_run_layout(tmp_path, fit_args, capsys):
    assert main(["fit", *fit_args()]) == 0
    run = _run_dir(tmp_path)
    for rel in ("config.yaml", "checkpoints/last.ckpt", "metrics.json", "predictions/val.parquet",
                "predictions/test.parquet", "plots/val_confusion_matrix.png", "plots/test_equity_curve.png"):
        assert (run / rel).is_file(), rel
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    metrics = json.loads((run / "metrics.json").read_text())
    for stage in ("val", "test"):
        assert {f"{stage}/{m}" for m in METRIC_NAMES} <= set(metrics)
    test = pd.read_parquet(run / "predictions/test.parquet")
    assert list(test.columns) == PRED_COLUMNS
    assert set(test.label) <= {-1, 0, 1} and set(test.prediction) <= {-1, 0, 1}
    assert test[["prob_short", "prob_flat", "prob_long"]].sum(axis=1).sub(1).abs().max() < 1e-5
    assert not test.duplicated(["datetime", "symbol"]).any()
    # metrics.json agrees with the predictions it was computed from
    acc = (test.label == test.prediction).mean()
    assert metrics["test/accuracy"] == pytest.approx(acc, abs=1e-6)
    out = capsys.readouterr().out
    assert "f1_macro" in out and "sharpe" in out  # the final summary is printed
    assert not list(run.rglob("*.tmp"))  # atomic writes leave no temp files


def test_print_config_is_complete_and_runnable(tmp_path, fit_args, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *fit_args(), "--print_config"])
    printed = capsys.readouterr().out
    cfg = yaml.safe_load(printed)
    assert cfg["model"]["init_args"]["net"]["class_path"].endswith("LSTMNet")
    path = tmp_path / "printed.yaml"
    path.write_text(printed)
    assert main(["fit", "--config", str(path), "--trainer.max_epochs", "1"]) == 0


def _last_state(run):
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_resume_matches_uninterrupted_run(tmp_path, fit_args):
    det = {"trainer.deterministic": "true"}
    assert main(["fit", *fit_args(epochs=4, **det), "--tracking.name", "straight"]) == 0
    assert main(["fit", *fit_args(epochs=2, **det), "--tracking.name", "resumed"]) == 0
    assert main(["fit", *fit_args(epochs=4, **det), "--tracking.name", "resumed", "--ckpt_path", "last"]) == 0
    resumed, straight = _run_dir(tmp_path, "resumed"), _run_dir(tmp_path, "straight")
    assert not _run_dir(tmp_path, "resumed", 1).exists()  # same run directory
    a, b = _last_state(resumed), _last_state(straight)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    load = lambda run: torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)  # noqa: E731
    assert load(resumed)["global_step"] == load(straight)["global_step"] > 0


def test_validate_test_predict_from_checkpoint(tmp_path, fit_args):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    run = _run_dir(tmp_path)
    before = pd.read_parquet(run / "predictions/test.parquet")
    fit_files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "events" not in p.name}
    assert main(["test", *fit_args(), "--ckpt_path", "best"]) == 0
    (evaluation,) = (run / "eval").glob("test-best-*")  # into the checkpoint's run, beside the fit's artifacts
    pd.testing.assert_frame_equal(before, pd.read_parquet(evaluation / "predictions/test.parquet"))
    assert main(["validate", *fit_args(), "--ckpt_path", str(next((run / "checkpoints").glob("best-*")))]) == 0
    assert (next((run / "eval").glob("val-best-*")) / "metrics.json").is_file()
    assert main(["predict", *fit_args(), "--ckpt_path", "last"]) == 0
    pred = pd.read_parquet(run / "eval/predict-test-last/predictions/predict.parquet")
    assert list(pred.columns) == PRED_COLUMNS and len(pred) == len(before)
    assert {p: p.read_bytes() for p in fit_files} == fit_files  # the fit's own artifacts, byte for byte
    assert [p.name for p in run.parent.iterdir()] == [run.name]  # no other run was claimed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.init_args.net.class_path", "ensemble.models.backbones.NoSuchNet"], "NoSuchNet"),
        (["--model.init_args.net.init_args.hiden_size", "3"], "'hiden_size' is not accepted"),
        (["--data.horizon", "7"], "label_h7"),
        (["--ckpt_path", "last"], "no run under"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, fit_args, capsys, extra, message):
    assert main(["fit", *fit_args(), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list((tmp_path / "runs").rglob("metrics.json"))  # nothing claims success


def test_checkpoint_from_other_features_is_refused(tmp_path, fit_args, capsys):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    ckpt = next((_run_dir(tmp_path) / "checkpoints").glob("best-*"))
    from panels import make_frames, write_frames

    frames = make_frames()
    frames = {k: v.rename(columns={"f1": "f1_other"}) for k, v in frames.items()}
    other = write_frames(tmp_path / "other", frames)
    assert main(["test", *fit_args(), "--data.root", str(other), "--ckpt_path", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "trained on other features" in err and "f1_other" in err
