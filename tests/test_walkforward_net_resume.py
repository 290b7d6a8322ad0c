"""A net walk-forward resumes with the same command: SIGKILL inside fold 2, then SIGTERM inside fold 3, of a tiny
3-fold LSTM walk-forward (2 epochs a fold). Each re-run skips the finished folds (their runs untouched), resumes the
interrupted fold in its own run folder from its last checkpoint, and a SIGTERM stop says to re-run the command
(a walk-forward refuses --ckpt_path)."""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}


def _wait_for(marker: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "the fold never reached its stall"
        time.sleep(0.1)


def _walkforward(splits: Path, out: Path, epochs: int, folds: int, *extra: str) -> list[str]:
    """The command line of a tiny LSTM walk-forward (seq_len 5, 8 hidden units) over ``splits`` into ``out``."""
    return [sys.executable, "-m", "ensemble.cli", "walkforward", "--config", str(ROOT / "configs" / "lstm.yaml"),
            "--data.root", str(splits), "--data.seq_len", "5", "--data.batch_size", "16", "--trainer.max_epochs",
            str(epochs), "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false",
            "--model.init_args.net.init_args.hidden_size", "8", "--wf.folds", str(folds), "--wf.val_bars", "3",
            "--wf.span", "all", "--wf.out", str(out), *extra]  # fmt: skip


def _fingerprints(run: Path) -> dict[str, int]:
    """mtime (ns) of every file of a finished run: a retrained or re-evaluated run rewrites them."""
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.rglob("*")) if p.is_file()}


def test_killed_net_walkforward_resumes_with_the_same_command(tmp_path, splits):
    killed, stopped = tmp_path / "killed", tmp_path / "stopped"
    out = tmp_path / "wf"
    cmd = _walkforward(splits, out, 2, 3,
           "--trainer.callbacks+=killer.StallInFold", f"--trainer.callbacks.marker={killed}",
           "--trainer.callbacks.fold=2",
           "--trainer.callbacks+=killer.StallInFold", f"--trainer.callbacks.marker={stopped}",
           "--trainer.callbacks.fold=3")  # fmt: skip

    # 1. SIGKILL at epoch 1 of fold 2: fold 1 finished, fold 2 holds its epoch-0 last.ckpt
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (fold_1,) = (out / "runs" / "fold_1").iterdir()
    before = _fingerprints(fold_1)
    assert "test/f1_macro" in json.loads((fold_1 / "metrics.json").read_text())
    assert (out / "runs" / "fold_2" / "version_0" / "checkpoints" / "last.ckpt").is_file()

    # 2. the same command: fold 1 skipped, fold 2 resumed; SIGTERM at epoch 1 of fold 3 stops it, exit 143
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(stopped, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    assert "[1/3] fold_1: skipped (finished earlier)" in stdout and "[2/3] fold_2: done" in stdout
    assert "fold_2: resuming its interrupted run from" in stdout and "last.ckpt" in stdout
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ensemble: stopped: SIGTERM received: saved ") and "re-run the same command" in last
    assert "--ckpt_path" not in last, last
    assert "it/s]" not in stderr and "Epoch 1:" not in stderr  # no per-batch bars (no terminal; folds are muted)
    assert _fingerprints(fold_1) == before

    # 3. the same command again: folds 1 and 2 skipped, fold 3 resumed from its SIGTERM checkpoint
    again = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped (finished earlier)") == 2 and "[3/3] fold_3: done" in again.stdout
    assert "fold_3: resuming its interrupted run from" in again.stdout
    assert _fingerprints(fold_1) == before  # never retrained nor re-evaluated
    for fold in (2, 3):  # each interrupted fold finished in the one run folder it started
        (run,) = (out / "runs" / f"fold_{fold}").iterdir()
        assert run.name == "version_0" and "test/f1_macro" in json.loads((run / "metrics.json").read_text())
    folds = pd.read_csv(out / "folds.csv")
    assert len(pd.read_parquet(out / "oof.parquet")) == folds.test_rows.sum()


def test_a_net_job_built_from_python_resumes_from_ckpt_path(tmp_path, splits):
    """The family layer's ``build(config, {"ckpt_path": ...})`` resumes a net's run in its own folder, as a tree's:
    what a retried experiment cell, a walk-forward fold process and a re-run fold pass (it was refused as
    ``Option 'ckpt_path' is not accepted``)."""
    from ensemble.training.family import build

    overrides = {"data.root": str(splits), "data.seq_len": 5, "trainer.accelerator": "cpu",
                 "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False,
                 "tracking.save_dir": str(tmp_path / "runs"),
                 "model.init_args.net.init_args.hidden_size": 8}  # fmt: skip
    config = str(ROOT / "configs" / "lstm.yaml")
    first = build(config, {**overrides, "trainer.max_epochs": 1})
    first.train()  # one epoch, no evaluation: an unfinished run, as a kill leaves it
    last = first.run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file() and not (first.run_dir / "metrics.json").exists()
    resumed = build(config, {**overrides, "trainer.max_epochs": 2, "ckpt_path": str(last)})
    resumed.fit()
    assert resumed.run_dir == first.run_dir  # a fresh fit would have claimed version_1
    assert resumed.trainer.current_epoch == 2 and not (first.run_dir.parent / "version_1").exists()
    assert "test/f1_macro" in json.loads((first.run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(("when", "said"), [
    ("start", "saved *fold_1/version_0/checkpoints/last.ckpt; re-run the same command to go on: it skips the "
              "finished folds and resumes the stopped fold from it"),
    ("end", "1 of 2 folds finished; re-run the same command to go on: it skips the finished folds and starts the "
            "next fold"),
])  # fmt: skip
def test_a_sigterm_while_a_fold_evaluates_stops_the_walkforward(tmp_path, splits, when, said):
    """Lightning stops a fit on SIGTERM inside its training loop, and an evaluation before its last batch (a
    SystemExit that exited 0 and silently: now 143 with the stop line); one that lands after fold 1's evaluation
    loop is remembered and stops the walk-forward before fold 2 starts, not forgotten."""
    signalled = tmp_path / "signalled"
    out = tmp_path / "wf"
    cmd = _walkforward(splits, out, 1, 2,
           "--trainer.callbacks+=killer.SigtermOnTestInFold", f"--trainer.callbacks.marker={signalled}",
           f"--trainer.callbacks.when={when}")  # fmt: skip
    done = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert signalled.exists() and done.returncode == 143, done.stderr
    assert fnmatch.fnmatch(done.stderr.strip().splitlines()[-1], f"ensemble: stopped: SIGTERM received: {said}")
    assert not (out / "runs" / "fold_2").exists()  # fold 2 never started
    again = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "[2/2] fold_2: done" in again.stdout
    assert ("[1/2] fold_1: skipped (finished earlier)" in again.stdout) == (when == "end")
