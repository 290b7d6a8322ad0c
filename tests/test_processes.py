"""Real processes, real signals: SIGTERM pre-emption of fit, an experiment killed with its cell running, a
second experiment on a busy cell, edited experiments, and a tuning worker SIGKILLed mid-trial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from ensemble.cli import main

TESTS = Path(__file__).parent
CONFIGS = TESTS.parent / "configs"
ENV = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def _wait_for(check, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while not check():
        assert proc.poll() is None, (proc.stderr.read() if proc.stderr else b"")[-3000:]
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie is dead


@pytest.mark.parametrize("model", ["lstm", "lightgbm"])
def test_sigterm_stops_fit_with_exit_143_and_a_resumable_last_checkpoint(model, tmp_path, fit_args):
    marker = tmp_path / "stalled"
    stall = ["--trainer.callbacks+=killer.StallAt" if model == "lstm" else "--trainer.callbacks+=killer.TreeStallAt",
             f"--trainer.callbacks.marker={marker}", "--trainer.callbacks.epoch=1"]  # fmt: skip
    tiny = ["--model.init_args.min_data_in_leaf", "5"] if model == "lightgbm" else []  # 200 grows no tree here
    args = [*fit_args(config=f"configs/{model}.yaml", epochs=4), *tiny, "--tracking.name", "pre"]
    proc = subprocess.Popen([sys.executable, "-m", "ensemble.cli", "fit", *args, *stall], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(marker.exists, proc)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=240)[1].decode()
    assert proc.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("ensemble: stopped: SIGTERM received") and "--ckpt_path" in line, line
    ckpts = tmp_path / "runs" / "pre" / "version_0" / "checkpoints"
    assert (ckpts / ("last.ckpt" if model == "lstm" else "last.meta.json")).is_file()
    assert not (tmp_path / "runs" / "pre" / "version_0" / "metrics.json").exists()  # no fake "finished" run
    assert main(["fit", *args, "--ckpt_path", "last"]) == 0  # resumes in the same run and finishes
    assert "test/f1_macro" in json.loads((ckpts.parent / "metrics.json").read_text())


def _experiment_yaml(tmp_path, splits, models, fit_args, **extra) -> Path:
    spec = {"name": "p", "models": models, "horizons": [5], "data_root": str(splits), "configs_dir": str(CONFIGS),
            "out": str(tmp_path / "exp"), "blends": [], "fit_args": fit_args, **extra}  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_killing_an_experiment_kills_its_cell_and_a_busy_cell_is_refused(tmp_path, splits):
    marker = tmp_path / "stalled"
    config = _experiment_yaml(tmp_path, splits, ["lstm"], [
        "--trainer.max_epochs", "3", "--data.seq_len", "5", "--trainer.callbacks+=killer.StallAt",
        f"--trainer.callbacks.marker={marker}", "--trainer.callbacks.batch=0"])  # fmt: skip
    cmd = [sys.executable, "-m", "ensemble.cli", "experiment", "--config", str(config)]
    parent = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(marker.exists, parent)
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
    cell = next(int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes())
    assert _alive(cell)

    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert second.returncode == 2
    assert "being trained by another process" in second.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "exp" / "runs" / "lstm_h5").glob("version_*")) == ["version_0"]

    parent.kill()  # SIGKILL: no handler of ours runs in the parent
    parent.wait()
    deadline = time.time() + 30
    while _alive(cell) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(cell), "the cell's fit outlived its experiment"


def test_edited_experiment_retrains_changed_cells_or_refuses(tmp_path, splits, capsys):
    tiny = ["--trainer.max_epochs", "1", "--trainer.rounds_per_epoch", "3", "--model.init_args.min_data_in_leaf", "5"]
    config = _experiment_yaml(tmp_path, splits, ["lightgbm"], tiny)
    assert main(["experiment", "--config", str(config)]) == 0
    assert main(["experiment", "--config", str(config)]) == 0
    assert "lightgbm_h5: skipped (finished earlier)" in capsys.readouterr().out
    runs = tmp_path / "exp" / "runs" / "lightgbm_h5"
    first = json.loads((runs / "version_0" / "cell.json").read_text())["fingerprint"]

    edited = _experiment_yaml(tmp_path, splits, ["lightgbm"], [*tiny[:1], "2", *tiny[2:]], on_change="refuse")
    assert main(["experiment", "--config", str(edited)]) == 2
    assert "trained with another config" in capsys.readouterr().err
    assert not (runs / "version_1").exists()  # refused before any cell ran

    edited = _experiment_yaml(tmp_path, splits, ["lightgbm"], [*tiny[:1], "2", *tiny[2:]])  # on_change: rerun
    assert main(["experiment", "--config", str(edited)]) == 0
    assert "config changed since" in capsys.readouterr().out
    record = json.loads((runs / "version_1" / "cell.json").read_text())
    assert record["fingerprint"] != first and record["config"]["trainer"]["max_epochs"] == 2
    board = __import__("pandas").read_csv(tmp_path / "exp" / "leaderboard.csv")
    member = board[board.kind == "member"]  # the baselines' rows have no run
    assert member.run_dir.iloc[0].endswith("version_1")  # the leaderboard shows the run of the current config


def test_a_tuning_worker_killed_mid_trial_is_failed_and_retried(tmp_path, fit_args):
    marker = tmp_path / "stalled"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.init_args.learning_rate": {"type": "float", "low": 0.05, "high": 0.2}}))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    base = [*fit_args(config="configs/lightgbm.yaml", epochs=3), "--model.init_args.min_data_in_leaf", "5",
            "--tune.n_trials", "1", "--tune.search_space", str(space), "--tune.storage", url,
            "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"), "--tune.heartbeat", "1"]  # fmt: skip
    stall = ["--trainer.callbacks+=killer.TreeStallAt", f"--trainer.callbacks.marker={marker}",
             "--trainer.callbacks.epoch=1"]  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "ensemble.cli", "tune", *base, *stall], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(marker.exists, worker)
    worker.kill()
    worker.wait()
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]  # what a dead worker leaves
    killed_params = study.trials[0].params
    time.sleep(3)  # past the grace period (2 heartbeats)

    assert main(["tune", *base]) == 0  # the next worker fails the stale trial and retries it first
    study = optuna.load_study(study_name="s", storage=url)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    retried = study.trials[1]
    assert retried.state == optuna.trial.TrialState.COMPLETE and retried.params == killed_params
    assert optuna.storages.RetryFailedTrialCallback.retried_trial_number(retried) == 0
    trials = (tmp_path / "out" / "trials.csv").read_text()
    assert "RUNNING" not in trials


def test_sigterm_to_an_experiment_stops_its_cell_and_exits_143(tmp_path, splits):
    marker = tmp_path / "stalled"
    config = _experiment_yaml(tmp_path, splits, ["lstm"], [
        "--trainer.max_epochs", "3", "--data.seq_len", "5", "--trainer.callbacks+=killer.StallAt",
        f"--trainer.callbacks.marker={marker}", "--trainer.callbacks.batch=0"])  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-m", "ensemble.cli", "experiment", "--config", str(config)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(marker.exists, parent)
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
    cell = next(int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes())
    parent.send_signal(signal.SIGTERM)
    err = parent.communicate(timeout=240)[1].decode()
    assert parent.returncode == 143, err[-2000:]
    assert "SIGTERM received: stopped lstm_h5;" in err.strip().splitlines()[-1]
    assert not _alive(cell)
    ckpts = tmp_path / "exp" / "runs" / "lstm_h5" / "version_0" / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()  # the cell itself was pre-empted cleanly, with a checkpoint


def test_sigterm_to_tune_exits_143_after_the_trial_stops(tmp_path, fit_args):
    marker = tmp_path / "stalled"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.init_args.learning_rate": {"type": "float", "low": 0.05, "high": 0.2}}))
    args = [*fit_args(config="configs/lightgbm.yaml", epochs=3), "--model.init_args.min_data_in_leaf", "5",
            "--tune.n_trials", "2", "--tune.search_space", str(space), "--tune.storage",
            f"sqlite:///{tmp_path / 'optuna.db'}", "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"),
            "--trainer.callbacks+=killer.TreeStallAt", f"--trainer.callbacks.marker={marker}",
            "--trainer.callbacks.epoch=1"]  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "ensemble.cli", "tune", *args], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(marker.exists, worker)
    worker.send_signal(signal.SIGTERM)
    err = worker.communicate(timeout=240)[1].decode()
    assert worker.returncode == 143, err[-2000:]
    assert "SIGTERM received" in err.strip().splitlines()[-1]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 1  # the second trial never started
