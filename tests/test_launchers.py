"""Launchers with real processes on 2 cores: ``local`` and ``ray`` give the leaderboard ``sequential`` gives,
a SIGKILLed cell is retried from its checkpoint, ``--threads`` reaches torch and the tree library, and bad
launcher settings are one line each."""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from launch_grid import board, grid_args, run_contents
from test_trees_cli import EXACT_RESUME

from ensemble.cli import main

TESTS = Path(__file__).parent
CONFIGS = TESTS.parent / "configs"
ENV = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
CELLS = ("xgboost_h5", "lightgbm_h5", "xgboost_h20", "lightgbm_h20")


CELL_LINE = re.compile(r"^\[[1-4]/4\] (xgboost|lightgbm)_h(5|20): done in \d+s, val/log_loss \d\.\d{4} \((.+)\)$")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The splits, the grid run once with ``sequential`` (the reference every launcher must match), and the cell
    lines it printed."""
    from panels import write_splits

    root = tmp_path_factory.mktemp("grid")
    splits = write_splits(root / "splits")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(grid_args(splits, root / "sequential")) == 0
    return splits, root, cell_lines(printed.getvalue(), root / "sequential")


def cell_lines(text: str, out: Path) -> list[str]:
    """The per-cell lines of an experiment's output, each matching ``CELL_LINE`` (checked), without the count and
    wall time (they follow the order cells finished in, and timings) and with ``out`` as ``<out>``; sorted."""
    lines = [line for line in text.splitlines() if line.startswith("[")]
    assert len(lines) == len(CELLS) and all(CELL_LINE.match(line) for line in lines), text
    return sorted(re.sub(r"^\[\d/4\] | in \d+s", "", line).replace(str(out), "<out>") for line in lines)


def test_local_with_two_workers_gives_the_sequential_leaderboard_and_runs(grid, capsys):
    splits, root, sequential_lines = grid
    out = root / "local"
    capsys.readouterr()
    assert main(grid_args(splits, out, "--launcher", "local", "--launcher.workers", "2")) == 0
    printed = capsys.readouterr()
    lines = printed.out
    pd.testing.assert_frame_equal(board(out), board(root / "sequential"))
    for cell in CELLS:
        ours, reference = out / "runs" / cell / "version_0", root / "sequential" / "runs" / cell / "version_0"
        assert run_contents(ours) == run_contents(reference), cell
    # a line per cell, with its key metric, the same as sequential's apart from order and timings
    assert cell_lines(lines, out) == sequential_lines
    assert "Epoch" not in lines and "[LightGBM]" not in lines  # workers' output stays in their cell.log
    assert "running" not in printed.err and "\r" not in printed.err  # no terminal: no bar, only the lines

    # --threads 1 reached the worker: torch's pool and the tree library's own thread parameter
    for cell in CELLS:
        log = (out / "runs" / cell / "cell.log").read_text()
        assert "threads 1 (torch 1, tree n_jobs 1)" in log.splitlines()[0]
        assert ("'nthread': 1" if cell.startswith("xgboost") else "'num_threads': 1") in log
        assert "n_jobs: 1" in (out / "runs" / cell / "version_0" / "config.yaml").read_text()

    capsys.readouterr()  # a re-run skips every finished cell, whatever the launcher, a line each with its metric
    assert main(grid_args(splits, out, "--launcher", "local", "--launcher.workers", "2")) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(skipped) == 4 and all(re.search(r": skipped \(finished earlier\), val/log_loss \d\.\d{4}", line)
                                     for line in skipped), skipped  # fmt: skip


@pytest.mark.slow
def test_ray_on_a_local_instance_gives_the_sequential_leaderboard_and_leaves_no_process(grid, capsys):
    splits, root, sequential_lines = grid
    before = _ray_processes()
    out = root / "ray"
    capsys.readouterr()
    assert main(grid_args(splits, out, "--launcher", "ray", "--launcher.workers", "2")) == 0
    pd.testing.assert_frame_equal(board(out), board(root / "sequential"))
    assert cell_lines(capsys.readouterr().out, out) == sequential_lines  # the same lines as sequential's
    time.sleep(1)
    assert not _ray_processes() - before, _ray_processes() - before


def _ray_processes() -> set[tuple[int, str]]:
    """(pid, command line) of the live processes of Ray's own (raylet, GCS, workers) on this machine."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        marks = ("ray/core", "ray/_private", "site-packages/ray/", "default_worker.py", "raylet", "gcs_server", "ray::")
        if any(mark in cmd for mark in marks):
            found.add((int(proc.name), cmd[:200]))
    return found


def test_a_cell_killed_mid_fit_is_retried_and_resumes_from_its_checkpoint(tmp_path, splits):
    from ensemble.training.family import build

    marker = tmp_path / "stalled"
    # bagging and feature sampling off: LightGBM restarts their random streams when a resumed booster is built, so
    # only without them is a resume bit-exact (as tests/test_trees_crash.py runs it, EXACT_RESUME)
    fit = json.dumps(["--trainer.max_epochs", "4", "--trainer.rounds_per_epoch", "4", *EXACT_RESUME["lightgbm"],
                      "--trainer.callbacks+=killer.TreeStallOnce", f"--trainer.callbacks.marker={marker}"])  # fmt: skip
    out = tmp_path / "exp"
    args = grid_args(splits, out, "--launcher", "local", "--launcher.workers", "2", models="[lightgbm]", fit=fit)
    parent = subprocess.Popen([sys.executable, "-m", "ensemble.cli", *args], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 240
    while not (marker.exists() and marker.read_text()):
        assert parent.poll() is None and time.time() < deadline, parent.stderr.read()[-3000:]
        time.sleep(0.1)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the cell's own fit process, mid-training
    _, stderr = parent.communicate(timeout=300)
    assert parent.returncode == 0, stderr.decode()[-3000:]

    logs = {c: (out / "runs" / c / "cell.log").read_text() for c in ("lightgbm_h5", "lightgbm_h20")}
    killed = [c for c, text in logs.items() if "killed by signal 9" in text]
    assert len(killed) == 1
    cell = out / "runs" / killed[0]
    log = (cell / "cell.log").read_text()
    assert "retry 1 of 1, resuming from" in log and "last.meta.json" in log
    assert "from round 8" in log  # the retry went on after the 2 checkpointed epochs (4 rounds each)
    assert sorted(p.name for p in cell.glob("version_*")) == ["version_0"]  # resumed in the run it was writing

    # the same cell trained without interruption (the marker exists now: no stall) gives the same metrics
    config = json.loads((cell / "version_0" / "cell.json").read_text())["config"]
    ref = build(config, {"tracking.save_dir": str(tmp_path / "ref"), "model.init_args.n_jobs": 1})
    ref.fit()
    timing = ("fit/", "time", "rss")
    strip = lambda run: {k: v for k, v in json.loads((run / "metrics.json").read_text()).items()  # noqa: E731
                         if not any(t in k for t in timing)}  # fmt: skip
    assert strip(cell / "version_0") == strip(ref.run_dir)


def test_sigterm_to_a_local_experiment_stops_its_cells_and_exits_143(tmp_path, splits):
    marker = tmp_path / "stalled"
    fit = json.dumps(["--trainer.max_epochs", "4", "--trainer.rounds_per_epoch", "4",
                      "--trainer.callbacks+=killer.TreeStallOnce", f"--trainer.callbacks.marker={marker}",
                      "--trainer.callbacks.epoch=0"])  # fmt: skip
    args = grid_args(splits, tmp_path / "exp", "--launcher", "local", "--launcher.workers", "2",
                     models="[lightgbm]", fit=fit)  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-m", "ensemble.cli", *args], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 240
    while not (marker.exists() and marker.read_text()):
        assert parent.poll() is None and time.time() < deadline, parent.stderr.read()[-3000:]
        time.sleep(0.1)
    cell = int(marker.read_text())
    parent.send_signal(signal.SIGTERM)  # cells run in worker threads: the main thread stops them all
    err = parent.communicate(timeout=240)[1].decode()
    assert parent.returncode == 143, err[-2000:]
    assert "SIGTERM received: stopped lightgbm_h" in err.strip().splitlines()[-1]
    assert not Path(f"/proc/{cell}").exists() or "Z" in Path(f"/proc/{cell}/stat").read_text().split(")")[-1][:3]


def test_bad_launcher_settings_are_one_line_each(tmp_path, splits, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases = [
        (["--launcher", "foo"], "launcher"),
        (["--launcher", "local", "--launcher.workers", "0"], "launcher.workers must be a whole number >= 1, got 0"),
        (["--threads", "0"], "threads must be a whole number >= 1, got 0"),
        (["--launcher.address", "127.0.0.1:1"], "launcher.address is for --launcher ray"),
        (["--launcher.workers", "2"], "launcher.workers is for --launcher local or ray, not 'sequential'"),
    ]
    for extra, expected in cases:
        capsys.readouterr()
        assert main(grid_args(splits, tmp_path / "exp", *extra)) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (extra, err)
    capsys.readouterr()
    assert main(grid_args(splits, blocker / "exp")) == 2  # out cannot be created: a file is in the way
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write there" in err[0] and "every node shares" in err[0], err
    assert not (tmp_path / "exp").exists()


def test_tune_workers_share_one_study(tmp_path, fit_args, capsys):
    import optuna
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.init_args.learning_rate": {"type": "float", "low": 0.05, "high": 0.2}}))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [*fit_args(config="configs/lightgbm.yaml", epochs=2), "--model.init_args.min_data_in_leaf", "5",
            "--tune.n_trials", "3", "--tune.workers", "2", "--tune.search_space", str(space), "--tune.storage", url,
            "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"), "--threads", "1"]  # fmt: skip
    capsys.readouterr()
    assert main(["tune", *args]) == 0
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    # the parent prints a line per finished trial (number, state, wall time, value, worker), nothing of the
    # workers' epochs, and no bar off a terminal
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if line.startswith("[")]
    found = [re.match(r"^\[([1-3])/3\] trial ([0-2]): complete in \d+s, val/log_loss before calibration "
                      r"(\d\.\d{4}) \(worker ([01])\)$", line) for line in lines]  # fmt: skip
    assert len(lines) == 3 and all(found), printed.out
    assert sorted(int(m[2]) for m in found) == [0, 1, 2] and [m[1] for m in found] == ["1", "2", "3"]
    for match in found:
        trial = study.trials[int(match[2])]
        assert float(match[3]) == pytest.approx(trial.value, abs=5e-5)
        assert int(match[4]) == trial.user_attrs["worker"]
    workers = [int(m[4]) for m in found]
    assert sorted(workers.count(w) for w in (0, 1)) == [1, 2]  # one worker ran 2 trials, the other one
    assert "epoch" not in printed.out.lower() and "\r" not in printed.err
    logs = [(tmp_path / "out" / f"worker_{i}.log").read_text() for i in range(2)]
    # the 3 trials, split over the 2 processes (a trial is muted: Optuna's one line per trial is its record)
    assert [log.count("finished with value") for log in logs] == [workers.count(w) for w in (0, 1)]
    assert (tmp_path / "out" / "trials.csv").is_file() and (tmp_path / "out" / "best.yaml").is_file()
    runs = {yaml.safe_load((Path(t.user_attrs["run_dir"]) / "config.yaml").read_text())["model"]["init_args"]["n_jobs"]
            for t in study.trials}  # fmt: skip
    assert runs == {1}
    assert "n_jobs" not in yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())["model"]["init_args"]


def test_fit_threads_reaches_torch_and_the_tree_library(tmp_path, splits, capsys):
    """``ensemble fit --threads N`` is the one setting for a single fit: torch's pool, OpenMP/BLAS and a tree
    model's own ``n_jobs`` (unless its config sets it); bad values are one line."""
    code = ("import sys, torch; from ensemble.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', torch.get_num_threads()); sys.exit(rc)")  # fmt: skip
    argv = ["fit", "--config", str(CONFIGS / "xgboost.yaml"), "--data.root", str(splits), "--tracking.save_dir",
            str(tmp_path / "runs"), "--trainer.max_epochs", "1", "--threads", "1"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300,
                          env={**ENV, "OMP_NUM_THREADS": "2"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TORCH 1" in done.stdout and "'nthread': 1" in done.stdout
    (config,) = (tmp_path / "runs").glob("xgboost_h5/version_0/config.yaml")
    assert "n_jobs: 1" in config.read_text()  # the run records the threads it trained with
    for bad, shown in (("0", "0"), ("x", "'x'")):
        assert main([*argv[:-1], bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"ensemble: error: --threads must be a whole number >= 1, got {shown}"


def test_no_cell_starts_once_sigterm_has_stopped_the_running_ones(tmp_path, monkeypatch):
    """A worker thread freed by a stopped cell takes the next queued one: after SIGTERM it must not start it."""
    from ensemble.errors import Preempted
    from ensemble.experiments import cells

    monkeypatch.setattr(cells, "_STOPPING", [signal.SIGTERM])
    folder = tmp_path / "xgboost_h20"
    folder.mkdir()
    with pytest.raises(Preempted) as stopped:
        cells.run_cell({"model": {}}, folder)
    assert stopped.value.key == "xgboost_h20" and not stopped.value.started and stopped.value.EXIT_CODE == 143
    assert "SIGTERM received: no cell was running, 1 not started" in stopped.value.message
    assert not (folder / "cell.log").exists()  # no process was spawned


@pytest.mark.parametrize("storage", ["sqlite:///:memory:", "sqlite://"])
def test_tune_workers_refuse_an_in_memory_storage(tmp_path, fit_args, capsys, storage):
    """Each worker process would open its own empty in-memory study: the parent waited on trials that never came."""
    args = [*fit_args(config="configs/lightgbm.yaml"), "--tune.n_trials", "2", "--tune.workers", "2",
            "--tune.storage", storage, "--tune.out", str(tmp_path / "out")]  # fmt: skip
    assert main(["tune", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--tune.storage {storage} is in memory" in err[0], err
    assert not (tmp_path / "out").exists()
