"""Walk-forward end to end on tiny panels: outputs, a planted leak that only purging stops, SIGKILL and resume,
one-line errors for bad --wf.* values."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_trees_cli import EXACT_RESUME

from ensemble.cli import main
from ensemble.data.folds import PURGE_ENV, block_bounds

ROOT = Path(__file__).parents[1]
LIGHTGBM = str(ROOT / "configs" / "lightgbm.yaml")
FAST = ["--trainer.max_epochs", "2", "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar",
        "false", "--model.init_args.min_data_in_leaf", "5"]  # fmt: skip


def walkforward(out: Path, root: Path, *extra: str) -> int:
    return main(["walkforward", "--config", LIGHTGBM, "--data.root", str(root), "--wf.out", str(out), *FAST, *extra])


def test_outputs(tmp_path, splits, capsys):
    out = tmp_path / "wf"
    assert walkforward(out, splits, "--wf.folds", "3", "--wf.val_bars", "4", "--wf.refit_every", "2") == 0
    folds = pd.read_csv(out / "folds.csv")
    assert folds["fold"].tolist() == [1, 2, 3] and folds["refit_from"].tolist() == [1, 1, 3]
    assert set(folds.columns) >= {"train_start", "train_end", "val_rows", "test_start", "test_end", "rows_purged"}
    assert (folds["val_rows"] == 3 * 4).all()  # 4 inner-val targets for each of the 3 symbols
    oof = pd.read_parquet(out / "oof.parquet")
    assert len(oof) == folds["test_rows"].sum() and not oof.duplicated(["datetime", "symbol"]).any()
    assert set(oof.columns) >= {"datetime", "symbol", "label", "prob_long", "prediction", "fwd_return", "fold"}
    for fold in folds.itertuples():  # each fold's block is its own rows, in its own time range
        part = oof[oof.fold == fold.fold]
        assert len(part) == fold.test_rows and str(part.datetime.min()) == fold.test_start.replace("T", " ")[:19]
    metrics = json.loads((out / "metrics.json").read_text())
    assert not any(Path(r).is_absolute() for r in folds.run_dir)  # relative to out: the folder can move
    per_fold = [json.loads((out / r / "metrics.json").read_text())["test/f1_macro"] for r in folds.run_dir]
    assert metrics["folds/f1_macro/mean"] == pytest.approx(np.mean(per_fold))
    assert metrics["folds/f1_macro/std"] == pytest.approx(np.std(per_fold, ddof=1))
    assert metrics["folds/f1_macro/min"] == pytest.approx(min(per_fold)) and "oof/log_loss" in metrics
    # fold 2 reused fold 1's model: same checkpoint file, no checkpoints of its own
    assert json.loads((out / folds.run_dir[1] / "metrics.json").read_text())["checkpoint/test"].startswith(str(out))
    assert {p.name for p in (out / "plots").iterdir()} == {"metrics_per_fold.png", "oof_equity_curve.png"}
    text = capsys.readouterr().out
    assert re.search(r"\[3/3\] fold_3: done in \d+s, oof/\w+ \d\.\d{4}", text)  # a line per fold, its oof metric
    assert "out-of-fold" in text and "mean ± std" in text
    assert "epoch 0" not in text and "best checkpoint" not in text  # folds are muted: a line each, no tables
    # span trainval: a final model trained as fit trains it (train, val early-stops) predicts the untouched test
    (final,) = (out / "runs" / "final").iterdir()
    final_metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["test/log_loss"] == final_metrics["test/log_loss"] and "val/log_loss" in final_metrics
    pd.testing.assert_frame_equal(pd.read_parquet(out / "predictions" / "test.parquet"),
                                  pd.read_parquet(final / "predictions" / "test.parquet"))  # fmt: skip
    assert "walk-forward final model: done" in text and "final model on test" in text
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["horizon"] == 5
    # a re-run skips every finished fold and the final model, and gives the same out-of-fold predictions
    assert walkforward(out, splits, "--wf.folds", "3", "--wf.val_bars", "4", "--wf.refit_every", "2") == 0
    again = capsys.readouterr().out
    assert again.count(": skipped (finished earlier)") == 3 and "final model: finished earlier, skipped" in again
    assert [p.name for p in (out / "runs" / "final").iterdir()] == [final.name]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "oof.parquet"), oof)
    # another setting into the same folder is refused, not mixed in
    assert walkforward(out, splits, "--wf.folds", "4") == 2
    refused = capsys.readouterr().err
    assert "ran its folds with other settings (wf.folds, wf.refit_every, wf.val_bars changed)" in refused
    # so is new data under the same settings (labels fixed upstream): the finished folds are of the old data
    train = pd.read_parquet(splits / "train_scaled.parquet")
    train.assign(label_h5=-train["label_h5"]).to_parquet(splits / "train_scaled.parquet")
    assert walkforward(out, splits, "--wf.folds", "3", "--wf.val_bars", "4", "--wf.refit_every", "2") == 2
    assert "the train split file changed since this walk-forward ran its folds" in capsys.readouterr().err
    # a walk-forward needs every fold's test-block predictions: --test false is refused before any fold
    assert walkforward(tmp_path / "wf2", splits, "--wf.folds", "3", "--test", "false") == 2
    assert "test: a walk-forward scores every fold on its test block" in capsys.readouterr().err
    assert not (tmp_path / "wf2" / "runs").exists()


def leak_splits(root: Path, h: int = 10, block: int = 100, regimes=(0, 1, 1, 2, 0, 0, 2)) -> Path:
    """Two symbols whose label at bar t is the regime of bar t+h: the label is written into the next h bars.
    Regimes change exactly at the walk-forward's block boundaries (6 folds over 7 groups), and the only useful
    feature is the clock, so a model can only predict a block from the labels of the bars just before it."""
    n_span, n_test = block * len(regimes), 40
    times = pd.date_range("2022-01-01", periods=n_span + n_test, freq="B")  # weekdays: the configs state 252 a year
    cuts = block_bounds(times[:n_span].asi8, np.ones(n_span, bool), len(regimes) - 1)
    regime = np.asarray(regimes)[np.minimum(np.searchsorted(cuts, times.asi8, side="right") - 1, len(regimes) - 1)]
    rng = np.random.default_rng(0)
    frames = []
    for s in ("A", "B"):
        label = np.r_[regime[h:], np.full(h, np.nan)] - 1
        frames.append(pd.DataFrame({
            "datetime": times, "symbol": s, "clock": np.arange(len(times), dtype="float32"),
            "f0": rng.standard_normal(len(times)).astype("float32"), f"label_h{h}": label,
            f"fwd_return_h{h}": np.where(np.isnan(label), np.nan, rng.normal(0, 0.01, len(times))),
        }))  # fmt: skip
    df = pd.concat(frames).sort_values(["datetime", "symbol"], kind="stable")
    root.mkdir(parents=True)
    edges = {"train": (None, times[n_span - block]), "val": (times[n_span - block], times[n_span]),
             "test": (times[n_span], None)}  # fmt: skip
    for split, (lo, hi) in edges.items():
        keep = (df.datetime >= lo if lo is not None else True) & (df.datetime < hi if hi is not None else True)
        df[keep].to_parquet(root / f"{split}_scaled.parquet", index=False)
    return root


@pytest.mark.parametrize("purge", [True, False])
def test_planted_leak_only_purging_stops(tmp_path, monkeypatch, purge):
    if not purge:
        monkeypatch.setenv(PURGE_ENV, "0")
    root = leak_splits(tmp_path / "leak")
    args = ["--data.horizon", "10", "--wf.folds", "6", "--wf.val_bars", "2", "--trainer.max_epochs", "3",
            "--trainer.callbacks", "[]", "--model.init_args.min_data_in_leaf", "3", "--model.init_args.learning_rate",
            "0.3", "--model.init_args.feature_fraction", "1.0",
            "--model.init_args.bagging_fraction", "1.0"]  # fmt: skip
    assert walkforward(tmp_path / "wf", root, *args) == 0
    oof = pd.read_parquet(tmp_path / "wf" / "oof.parquet")
    accuracy = float((oof["prediction"] == oof["label"]).mean())
    if purge:
        assert accuracy < 0.45, accuracy  # chance is 1/3: the blocks' regimes cannot be known in advance
    else:
        assert accuracy > 0.75, accuracy  # the unpurged labels before each block carry the block's regime


def test_sigkill_in_fold_3_resumes_at_fold_3(tmp_path, splits):
    marker = tmp_path / "stalled"
    cmd = [sys.executable, "-m", "ensemble.cli", "walkforward", "--config", LIGHTGBM, "--data.root", str(splits),
           *FAST, "--trainer.max_epochs", "3", "--wf.folds", "4", *EXACT_RESUME["lightgbm"],
           "--trainer.callbacks+=killer.TreeStallInFold", f"--trainer.callbacks.marker={marker}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--wf.out", str(killed)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folds = pd.read_csv(killed / "folds.csv")
    assert folds["fold"].tolist() == [1, 2]  # folds 1 and 2 finished, fold 3 was mid-training
    assert list((killed / "runs" / "fold_3").glob("version_*"))
    again = subprocess.run([*cmd, "--wf.out", str(killed)], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped (finished earlier)") == 2 and "[3/4] fold_3: done" in again.stdout
    assert "fold_3: resuming its interrupted run from" in again.stdout and "last.meta.json" in again.stdout
    (fold_3,) = (killed / "runs" / "fold_3").iterdir()  # the killed run was resumed from its epoch-0 checkpoint
    assert "test/f1_macro" in json.loads((fold_3 / "metrics.json").read_text())
    whole = subprocess.run([*cmd, "--wf.out", str(tmp_path / "whole")], env=env, cwd=tmp_path, capture_output=True,
                           text=True)  # fmt: skip  (the marker exists now: no stall)
    assert whole.returncode == 0, whole.stderr
    whole_oof = pd.read_parquet(tmp_path / "whole" / "oof.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "oof.parquet"), whole_oof)
    whole_metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert json.loads((killed / "metrics.json").read_text()) == whole_metrics


def test_sigterm_in_a_tree_fold_says_rerun_the_same_command(tmp_path, splits):
    """A SIGTERM stop inside a fold names its checkpoint and says to re-run the walk-forward (which refuses
    --ckpt_path), as a net fold's stop does (tests/test_walkforward_net_resume.py)."""
    marker = tmp_path / "stalled"
    cmd = [sys.executable, "-m", "ensemble.cli", "walkforward", "--config", LIGHTGBM, "--data.root", str(splits),
           *FAST, "--trainer.max_epochs", "3", "--wf.folds", "2", "--wf.span", "all", "--wf.out", str(tmp_path / "wf"),
           "--trainer.callbacks+=killer.TreeStallInFold", f"--trainer.callbacks.marker={marker}",
           "--trainer.callbacks.fold=2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=240)[1]
    assert proc.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("ensemble: stopped: SIGTERM received: stopped after round") and "last.meta.json" in line
    assert "re-run the same command to go on" in line and "--ckpt_path" not in line, line


@pytest.mark.parametrize(("flags", "message"), [
    (["--wf.folds", "1"], "wf.folds must be >= 2, got 1"),
    (["--wf.embargo", "-2"], "wf.embargo must be >= 0, got -2"),
    (["--wf.mode", "sliding"], "wf.mode must be one of expanding, rolling, got 'sliding'"),
    (["--wf.mode", "rolling"], "wf.train_bars must be >= 2 in rolling mode"),
    (["--wf.span", "test"], "wf.span must be one of trainval, all, got 'test'"),
    (["--wf.refit_every", "0"], "wf.refit_every must be >= 1, got 0"),
    (["--wf.val_fraction", "1.5"], "wf.val_fraction must be in (0, 1), got 1.5"),
    (["--wf.folds", "six"], "argument --wf.folds: invalid int value: 'six'"),
    (["--wf.fold", "3"], "unknown option --wf.fold"),
    (["--wf.name", "../x"], "wf.name '../x' is not a name"),
])  # fmt: skip
def test_bad_wf_values_are_one_line(tmp_path, splits, capsys, flags, message):
    args = ["walkforward", "--config", LIGHTGBM, "--data.root", str(splits), "--wf.out", str(tmp_path), *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ensemble: error: ") and message in err and "\n" not in err


def test_span_all_rolling_with_embargo(tmp_path, splits, capsys):
    out = tmp_path / "wf"
    args = ["--wf.folds", "2", "--wf.span", "all", "--wf.mode", "rolling", "--wf.train_bars", "40", "--wf.embargo", "2"]
    assert walkforward(out, splits, *args) == 0
    assert "no final model: with wf.span all" in capsys.readouterr().out  # test was walked over: no holdout left
    assert not (out / "runs" / "final").exists() and not (out / "predictions").exists()
    folds = pd.read_csv(out / "folds.csv")
    assert (folds.train_rows + folds.val_rows + folds.rows_purged <= 3 * 40).all()  # 40 bars of each of 3 symbols
    oof = pd.read_parquet(out / "oof.parquet")
    test = pd.read_parquet(splits / "test_scaled.parquet").dropna(subset=["label_h5"])
    assert oof.datetime.max() == test.datetime.max()  # the walk went over the test split too
