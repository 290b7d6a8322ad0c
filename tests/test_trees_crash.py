"""Crash-safe resume of a tree run: SIGKILL ``ensemble fit`` mid-training, resume with ``--ckpt_path last``."""

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
import pytest
from test_trees_cli import EXACT_RESUME, MODELS, TREES, cli, quality

from ensemble.cli import main

TESTS = Path(__file__).parent


# On these random panels val/log_loss (the configs' monitor) is best at epoch 0 and early stopping ends the run
# at epoch 3; the best-commit case needs a later epoch that improves: on val/f1_macro, with no early stopping,
# epoch 4 does (the test checks that it stalled inside best's commit).
F1_BEST = ["--trainer.callbacks", "[]", "--checkpoint.monitor", "val/f1_macro", "--checkpoint.mode", "max"]

# where the kill lands (TreeStallAt's epoch and ``during``) -> the global step the killed run's last sidecar holds
KILLS = [
    ("lightgbm", 2, None, 6),  # epoch 2 boosted, not yet checkpointed; epochs 0 and 1 are
    ("xgboost", 2, None, 6),
    ("lightgbm", 2, "last", 9),  # epoch 2's last sidecar committed, its model file not yet moved into place
    ("xgboost", 4, "best", 12),  # epoch 4 (which improves) has best committed, last staged but not committed
]


@pytest.mark.parametrize(("name", "epoch", "during", "step"), KILLS)
def test_sigkill_mid_fit_then_resume_matches_uninterrupted(name, epoch, during, step, splits, tmp_path):
    marker, suffix = tmp_path / "stalled", TREES[name]
    monitor = F1_BEST if during == "best" else []
    args = lambda save_dir, *extra: cli(name, splits, save_dir, *EXACT_RESUME[name], *monitor, *extra, epochs=5)  # noqa: E731
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    stall = ["--trainer.callbacks+=killer.TreeStallAt", f"--trainer.callbacks.marker={marker}",
             f"--trainer.callbacks.epoch={epoch}"]  # fmt: skip
    stall += [f"--trainer.callbacks.during={during}"] if during else []
    cmd = [sys.executable, "-m", "ensemble.cli", *args(tmp_path / "a", *stall)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, f"the run never reached epoch {epoch}"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = tmp_path / "a" / f"{name}_h5" / "version_0"
    assert json.loads((run / "checkpoints/last.meta.json").read_text())["global_step"] == step
    staged = [p for p in (run / "checkpoints").iterdir() if re.match(r"(last|best)\.[0-9a-f]{8}\.", p.name)]
    assert bool(staged) == (during is not None)
    if during == "best":  # the kill landed inside epoch 4's best commit: its sidecar names epoch 4's files
        assert json.loads((run / "checkpoints/best.meta.json").read_text())["global_step"] == 15
    assert not (run / "metrics.json").exists()

    assert main(args(tmp_path / "a", "--ckpt_path", "last")) == 0
    assert main(args(tmp_path / "b")) == 0
    straight = tmp_path / "b" / f"{name}_h5" / "version_0"
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # resumed in the same run dir
    for tag in ("last", "best"):
        a, b = (json.loads((r / f"checkpoints/{tag}.meta.json").read_text()) for r in (run, straight))
        a.pop("sha256"), b.pop("sha256")  # digests of the files, whose LightGBM parameter blocks differ (below)
        assert a == b, tag  # rounds, epoch, early-stopping and checkpoint state
        # the same trees, byte for byte (LightGBM's trailing parameter block records the last call's round count)
        a, b = ((r / f"checkpoints/{tag}{suffix}").read_bytes().split(b"end of trees")[0] for r in (run, straight))
        assert a == b, tag
        X = np.random.default_rng(0).standard_normal((200, 4)).astype(np.float32)
        models = [MODELS[name]() for _ in range(2)]
        for model, r in zip(models, (run, straight), strict=True):
            model.load(r / f"checkpoints/{tag}{suffix}")
        np.testing.assert_array_equal(models[0].predict_proba(X), models[1].predict_proba(X), err_msg=tag)
    assert quality(run) == quality(straight)
    assert sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and "events" not in p.name) == sorted(
        p.relative_to(straight) for p in straight.rglob("*") if p.is_file() and "events" not in p.name
    )  # the same artifacts, and no temp file of an interrupted atomic write
    assert not list(run.rglob("*.tmp"))
