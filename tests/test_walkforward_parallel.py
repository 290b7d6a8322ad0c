"""``ensemble walkforward --launcher local``: the folds in their own processes, two at once, give the sequential
walk-forward's out-of-fold predictions and metrics (refit folds included); a failed fold is named in one line; a
fold process killed mid-fit is retried from its checkpoint and changes nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from launch_grid import TIMINGS
from test_trees_cli import EXACT_RESUME

from ensemble.cli import main

ROOT = Path(__file__).parents[1]
LIGHTGBM = str(ROOT / "configs" / "lightgbm.yaml")
FAST = ["--trainer.max_epochs", "3", "--trainer.rounds_per_epoch", "4", "--trainer.enable_progress_bar", "false",
        "--model.init_args.min_data_in_leaf", "5", "--threads", "1"]  # fmt: skip
LOCAL = ["--launcher", "local", "--launcher.workers", "2"]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}


def args(out: Path, splits: Path, *extra: str) -> list[str]:
    return ["walkforward", "--config", LIGHTGBM, "--data.root", str(splits), "--wf.out", str(out), *FAST, *extra]


def outputs(out: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """oof.parquet, metrics.json without timings, folds.csv without the run folders (they differ by ``out``)."""
    metrics = json.loads((out / "metrics.json").read_text())
    metrics = {k: v for k, v in metrics.items() if not any(t in k for t in TIMINGS)}
    return pd.read_parquet(out / "oof.parquet"), metrics, pd.read_csv(out / "folds.csv").drop(columns="run_dir")


def assert_same(a: Path, b: Path) -> None:
    (oof_a, metrics_a, folds_a), (oof_b, metrics_b, folds_b) = outputs(a), outputs(b)
    pd.testing.assert_frame_equal(oof_a, oof_b)
    assert metrics_a == metrics_b
    pd.testing.assert_frame_equal(folds_a, folds_b)


FOLD_LINE = re.compile(r"^\[[1-3]/3\] fold_[1-3]: done in \d+s, oof/log_loss \d\.\d{4} \(.+/fold_[1-3]/version_0\)$")


def fold_lines(text: str, out: Path) -> list[str]:
    """The per-fold lines of a walk-forward's output, each matching ``FOLD_LINE`` (checked), without the count and
    wall time (they follow the order folds finished in, and timings) and with ``out`` as ``<out>``."""
    lines = [line for line in text.splitlines() if line.startswith("[")]
    assert len(lines) == 3 and all(FOLD_LINE.match(line) for line in lines), text
    return sorted(re.sub(r"^\[\d/3\] | in \d+s", "", line).replace(str(out), "<out>") for line in lines)


def test_local_folds_equal_sequential_with_refit_folds_first(tmp_path, splits, capsys):
    wf = ["--wf.folds", "3", "--wf.val_bars", "4", "--wf.refit_every", "2"]
    assert main(args(tmp_path / "seq", splits, *wf)) == 0
    sequential = capsys.readouterr()
    assert main(args(tmp_path / "local", splits, *wf, *LOCAL)) == 0
    printed = capsys.readouterr()
    text = printed.out
    assert_same(tmp_path / "seq", tmp_path / "local")
    folds = pd.read_csv(tmp_path / "local" / "folds.csv")
    assert folds["refit_from"].tolist() == [1, 1, 3]
    fold_2 = json.loads((tmp_path / "local" / folds.run_dir[1] / "metrics.json").read_text())
    assert fold_2["checkpoint/test"].startswith(str(tmp_path / "local" / "runs" / "fold_1"))  # fold 1's model
    # one line per fold with its out-of-fold metric (the refit folds 1 and 3 first, then fold 2), the same as
    # sequential's apart from order and timings; nothing from the folds' own training, and no bar off a terminal
    assert fold_lines(text, tmp_path / "local") == fold_lines(sequential.out, tmp_path / "seq")
    assert "fold_2" in [line for line in text.splitlines() if line.startswith("[")][-1]
    assert "walk-forward final model: done" in text  # then the final model, judged on test
    assert "epoch" not in text and "cell process" not in text
    assert "\r" not in printed.err and "\r" not in sequential.err
    # each fold's cell.log holds its whole output: the threads it got, its training's epochs and result table
    for number in (1, 2, 3):
        log = (tmp_path / "local" / "runs" / f"fold_{number}" / "cell.log").read_text()
        assert "threads 1" in log.splitlines()[0]
        # its result table (fold 2 evaluates fold 1's model: a table, no epochs of its own)
        assert re.search(r"^metric +val +test\n(.*\n)*log_loss +\d", log, re.M), log
        assert number == 2 or re.search(r"lightgbm epoch 2: \d+ rounds, val/", log), log  # the refit folds train
    # a re-run skips every finished fold, in this process
    assert main(args(tmp_path / "local", splits, *wf, *LOCAL)) == 0
    again = capsys.readouterr().out
    assert again.count("skipped (finished earlier), oof/log_loss") == 3
    assert "final model: finished earlier, skipped" in again


def test_a_failed_fold_is_named_and_nothing_is_stitched(tmp_path, splits, capsys):
    fail = ["--wf.folds", "3", "--trainer.callbacks+=killer.TreeFailInFold", "--trainer.callbacks.fold=2"]
    out = tmp_path / "wf"
    proc = subprocess.run([sys.executable, "-m", "ensemble.cli", *args(out, splits, *fail, *LOCAL, "--quiet")],
                          env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert "fold(s) 2 of 3 failed, nothing stitched; fold 2: RuntimeError: planted failure in fold 2" in line, line
    assert str(out / "runs" / "fold_2" / "cell.log") in line
    log = (out / "runs" / "fold_2" / "cell.log").read_text()  # the fold's whole output: the error's traceback too
    assert "Traceback (most recent call last)" in log and "planted failure in fold 2" in log
    assert not (out / "oof.parquet").exists()
    for number in (1, 3):  # the other folds went on and finished
        assert "test/f1_macro" in json.loads(next((out / "runs" / f"fold_{number}").glob("*/metrics.json")).read_text())


def test_a_fold_killed_mid_fit_is_retried_from_its_checkpoint(tmp_path, splits):
    marker = tmp_path / "stalled"
    stall = ["--wf.folds", "2", *EXACT_RESUME["lightgbm"], "--trainer.callbacks+=killer.TreeStallOnce",
             f"--trainer.callbacks.marker={marker}"]  # fmt: skip  (bagging off: an exact resume, as in test_launchers)
    cmd = [sys.executable, "-m", "ensemble.cli", *args(tmp_path / "killed", splits, *stall, *LOCAL)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (marker.exists() and marker.read_text()):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-3000:]
        time.sleep(0.1)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # one fold's own process, after epoch 2's rounds
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    logs = {p.parent.name: p.read_text() for p in (tmp_path / "killed" / "runs").glob("fold_*/cell.log")}
    (killed,) = [fold for fold, text in logs.items() if "killed by signal 9" in text]
    assert "retry 1 of 1, resuming from" in logs[killed] and "version_0/checkpoints/last.meta.json" in logs[killed]
    assert [p.name for p in (tmp_path / "killed" / "runs" / killed).glob("version_*")] == ["version_0"]
    # the same walk-forward run straight through (the marker exists now: no stall), one fold after another
    assert main(args(tmp_path / "straight", splits, *stall)) == 0
    assert_same(tmp_path / "killed", tmp_path / "straight")


def test_bad_launcher_flags_are_one_line_each(tmp_path, splits, capsys):
    cases = [
        (["--launcher", "foo"], "argument --launcher.kind: invalid choice: 'foo'"),
        (["--launcher", "local", "--launcher.workers", "0"], "launcher.workers must be a whole number >= 1, got 0"),
        (["--threads", "0"], "--threads must be a whole number >= 1, got 0"),
        (["--launcher.address", "127.0.0.1:1"], "launcher.address is for --launcher ray, not 'sequential'"),
        (["--launcher.retry", "2"], "unknown option --launcher.retry"),
    ]
    for extra, expected in cases:
        capsys.readouterr()
        assert main(args(tmp_path / "wf", splits, *extra)) == 2, extra
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert expected in line, (extra, line)
    assert not (tmp_path / "wf").exists()  # refused before anything was written
