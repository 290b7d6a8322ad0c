"""Real multi-process DDP on CPU (gloo, 2 processes, launched as a subprocess of the test)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ensemble.cli import main


def _cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ensemble.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_ddp_evaluation_counts_every_sample_once(tmp_path, fit_args):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    run = tmp_path / "runs" / "lstm_h5" / "version_0"
    ckpt = str(next((run / "checkpoints").glob("best-*")))
    single = {s: pd.read_parquet(run / f"predictions/{s}.parquet") for s in ("val", "test")}
    single_metrics = json.loads((run / "metrics.json").read_text())

    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    ddp_metrics = {}
    for command, split in (("validate", "val"), ("test", "test")):
        done = _cli(command, *fit_args(), *ddp, "--ckpt_path", ckpt)
        assert done.returncode == 0, done.stderr[-3000:]
        evaluation = run / "eval" / f"{split}-{Path(ckpt).stem}"  # one folder, written by rank 0 only
        ddp_metrics.update(json.loads((evaluation / "metrics.json").read_text()))
        got = pd.read_parquet(evaluation / f"predictions/{split}.parquet")
        assert not got.duplicated(["datetime", "symbol"]).any()  # no padding duplicates
        pd.testing.assert_frame_equal(got, single[split], check_exact=False, atol=1e-6)  # no gaps
    assert sorted(p.name for p in (run / "eval").iterdir()) == [f"test-{Path(ckpt).stem}", f"val-{Path(ckpt).stem}"]
    for key, value in single_metrics.items():
        if key.startswith(("fit/", "checkpoint/")):  # training cost, written by fit only; the checkpoint's name
            continue
        if key.startswith("calibration/") and key != "calibration/temperature":  # how fit fitted T: fit only
            continue
        assert ddp_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_ddp_fit_trains_and_writes_one_run(tmp_path, fit_args):
    done = _cli("fit", *fit_args(epochs=1), "--trainer.strategy", "ddp", "--trainer.devices", "2",
                "--trainer.accelerator", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "runs" / "lstm_h5").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # rank 1 did not claim a folder of its own
    assert (runs[0] / "predictions" / "test.parquet").is_file()

