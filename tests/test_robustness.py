"""Crash-safe resume, concurrent runs, non-finite losses and checkpoint safety."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ensemble.cli import main
from ensemble.models import Classifier
from ensemble.training.runs import claim_run_dir

TESTS = Path(__file__).parent


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, fit_args):
    det = {"trainer.deterministic": "true"}
    marker = tmp_path / "stalled"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ensemble.cli", "fit", *fit_args(epochs=3, **det), "--tracking.name", "crashed",
           "--trainer.callbacks+=killer.StallAt", f"--trainer.callbacks.marker={marker}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the run never reached epoch 1"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # mid-epoch 1, after epoch 0's checkpoint
    proc.wait()
    run = tmp_path / "runs" / "crashed" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()

    assert main(["fit", *fit_args(epochs=3, **det), "--tracking.name", "crashed", "--ckpt_path", "last"]) == 0
    assert main(["fit", *fit_args(epochs=3, **det), "--tracking.name", "straight"]) == 0
    straight = tmp_path / "runs" / "straight" / "version_0"
    assert sorted(p.name for p in (tmp_path / "runs" / "crashed").iterdir()) == ["version_0"]  # same run dir
    a = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(straight / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (run, straight))
    assert ma.keys() == mb.keys()
    for key in (k for k in ma if not k.startswith("fit/")):  # equal up to float summation order; fit/* is cost
        assert ma[key] == pytest.approx(mb[key], rel=1e-5, abs=1e-7), key
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*.tmp"))  # no half-written artifact


def _claim(base: str, queue) -> None:
    queue.put(str(claim_run_dir(Path(base))))


def test_concurrent_runs_get_distinct_run_dirs(tmp_path):
    queue = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_claim, args=(str(tmp_path / "lstm"), queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    claimed = [queue.get(timeout=5) for _ in procs]
    assert len(set(claimed)) == 6


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path, fit_args, capsys):
    huge = ["--model.init_args.optimizer.init_args.lr", "1e30", "--trainer.max_epochs", "3"]
    assert main(["fit", *fit_args(), *huge]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "epoch" in err and "global step" in err
    assert not list((tmp_path / "runs").rglob("metrics.json"))  # no NaN "result" reaches metrics.json


def test_checkpoints_load_weights_only_and_rebuild_the_model(tmp_path, fit_args):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    ckpt = next((tmp_path / "runs/lstm_h5/version_0/checkpoints").glob("best-*"))
    model = Classifier.load_from_checkpoint(ckpt, weights_only=True)
    assert model.hparams.feature_names == ["f0", "f1", "f2", "f3"] and model.hparams.horizon == 5
    assert model(torch.randn(2, 5, 4)).shape == (2, 3)


@pytest.mark.parametrize("config", ["configs/lstm.yaml", "configs/lightgbm.yaml"])
def test_resume_removes_what_a_killed_run_half_wrote(fit_args, tmp_path, config):
    assert main(["fit", *fit_args(config=config, epochs=1)]) == 0
    (run,) = (tmp_path / "runs").glob("*/version_0")
    planted = [run / ".metrics.json.k1ll3d.tmp", run / "predictions" / ".test.parquet.k1ll3d.tmp"]
    for path in planted:  # what atomic_write leaves when SIGKILL lands mid-write
        path.write_text("half")
    keep = run / "notes.txt"
    keep.write_text("a user's own file")
    assert main(["fit", *fit_args(config=config, epochs=2), "--ckpt_path", "last"]) == 0
    assert not any(p.exists() for p in planted) and not list(run.rglob("*.tmp"))
    assert keep.read_text() == "a user's own file"
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # resumed in place
