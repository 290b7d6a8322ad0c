"""Stopping and resuming runs of many cells, with real processes and real signals: SIGTERM to a local experiment
stops every running cell within seconds and names them all, and the same command resumes each from its last
checkpoint to the metrics of an uninterrupted run; Ctrl-C on a local walk-forward is one line, exit 130, no
process left behind; a Ray address that does not answer is one line within seconds, and one that does (a real
``ray start --head``) still works."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from launch_grid import TIMINGS, grid_args
from test_launchers import _ray_processes
from test_trees_cli import EXACT_RESUME

from ensemble.cli import main
from ensemble.launchers import Outcome, Progress

TESTS = Path(__file__).parent
CONFIGS = TESTS.parent / "configs"
ENV = {**os.environ, "PYTHONPATH": f"{TESTS.parent}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1",
       "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
CELLS = ("lightgbm_h5", "lightgbm_h20")


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int], grace: float = 5) -> dict[int, str]:
    """The command lines of ``pids`` still alive after up to ``grace`` seconds (multiprocessing's resource
    tracker, for one, leaves a moment after its parent)."""
    deadline = time.time() + grace
    while True:
        alive = {}
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            except OSError:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.1)


def _wait_for_markers(markers: list[Path], proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not all(m.exists() and m.read_text() for m in markers):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-3000:]
        time.sleep(0.1)


def _metrics(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if not any(t in k for t in TIMINGS)}


def test_sigterm_stops_every_cell_promptly_and_the_same_command_resumes_them(tmp_path, splits, capsys):
    from ensemble.training.family import build

    marker = tmp_path / "stalled"
    fit = ["--trainer.max_epochs", "4", "--trainer.rounds_per_epoch", "4", *EXACT_RESUME["lightgbm"],
           "--trainer.callbacks+=killer.TreeStallOncePerCell", f"--trainer.callbacks.marker={marker}",
           "--trainer.callbacks.epoch=1"]  # fmt: skip  (each cell stalls once, after epoch 1's rounds)
    out = tmp_path / "exp"
    args = grid_args(splits, out, "--launcher", "local", "--launcher.workers", "2", models="[lightgbm]",
                     fit=json.dumps(fit))  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-m", "ensemble.cli", *args], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_markers([tmp_path / f"stalled.{c}" for c in CELLS], parent)
    processes = _descendants(parent.pid)
    started = time.perf_counter()
    parent.send_signal(signal.SIGTERM)
    err = parent.communicate(timeout=120)[1].decode()
    took = time.perf_counter() - started
    print(f"SIGTERM to exit: {took:.1f} s")
    assert parent.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("ensemble: stopped: SIGTERM received: stopped lightgbm_h"), line
    assert all(cell in line for cell in CELLS) and "re-run the same command" in line, line
    assert took < 20, f"{took:.1f} s from SIGTERM to exit"  # ~4 s on 2 idle cores: the cells' own shutdown
    assert processes and not _alive(processes), _alive(processes)
    for cell in CELLS:  # each cell checkpointed on its way out and is unfinished
        run = out / "runs" / cell / "version_0"
        assert (run / "checkpoints" / "last.meta.json").is_file() and not (run / "metrics.json").exists()

    # the same cells with another config are never resumed from these checkpoints: refused here (on_change)
    edited = [*fit[:1], "5", *fit[2:]]
    capsys.readouterr()
    assert main([*grid_args(splits, out, models="[lightgbm]", fit=json.dumps(edited)), "--on_change", "refuse"]) == 2
    assert "was trained with another config" in capsys.readouterr().err

    assert main(args) == 0  # the same command: each cell resumes its run where it stopped
    said = capsys.readouterr().out
    for cell in CELLS:
        folder = out / "runs" / cell
        assert f"{cell}: resuming its interrupted run from {folder / 'version_0' / 'checkpoints'}" in said, said
        log = (folder / "cell.log").read_text()
        assert "resuming the interrupted run from" in log and "from round 8" in log  # after 2 epochs of 4 rounds
        assert sorted(p.name for p in folder.glob("version_*")) == ["version_0"]
        # the same cell trained without interruption (its marker exists now: no stall) gives the same metrics
        config = json.loads((folder / "version_0" / "cell.json").read_text())["config"]
        ref = build(config, {"tracking.save_dir": str(tmp_path / "ref"), "model.init_args.n_jobs": 1})
        ref.fit()
        assert _metrics(folder / "version_0") == _metrics(ref.run_dir)


def test_an_interrupted_run_of_another_config_is_never_resumed(tmp_path):
    """A net's ``last.ckpt`` or a tree's ``last.meta.json`` left by a stop is resumed only under the config
    ``started.json`` names: another config trains from the start (a new version), or is refused with
    ``on_change: refuse``."""
    from ensemble.experiments.cells import STARTED, fingerprint, interrupted_run
    from ensemble.io import write_json
    from ensemble.training.config import resolve_config

    for model, last in (("lstm", "last.ckpt"), ("lightgbm", "last.meta.json")):
        folder = tmp_path / model
        (folder / "version_0" / "checkpoints").mkdir(parents=True)
        (folder / "version_0" / "checkpoints" / last).write_text("")
        config = resolve_config(CONFIGS / f"{model}.yaml", {})
        assert interrupted_run(config, folder) == (None, None)  # no record: nothing known about it
        write_json(folder / STARTED, {"fingerprint": fingerprint(config), "before": []})
        assert interrupted_run(config, folder) == (folder / "version_0" / "checkpoints" / last, None)
        other = resolve_config(config, {"trainer.max_epochs": 99})
        assert interrupted_run(other, folder) == (None, folder / "version_0")
        write_json(folder / STARTED, {"fingerprint": fingerprint(config), "before": ["version_0"]})
        assert interrupted_run(config, folder) == (None, None)  # an older run than the one recorded


def test_ctrl_c_on_a_local_walkforward_is_one_line_exit_130_and_no_process_left(tmp_path, splits):
    marker = tmp_path / "stalled"
    out = tmp_path / "wf"
    cmd = [sys.executable, "-m", "ensemble.cli", "walkforward", "--config", str(CONFIGS / "lightgbm.yaml"),
           "--data.root", str(splits), "--wf.out", str(out), "--wf.folds", "2", "--trainer.max_epochs", "3",
           "--trainer.rounds_per_epoch", "4", "--model.init_args.min_data_in_leaf", "5", "--threads", "1",
           "--launcher", "local", "--launcher.workers", "2", "--trainer.callbacks+=killer.TreeStallOncePerCell",
           f"--trainer.callbacks.marker={marker}", "--trainer.callbacks.epoch=1", "--quiet"]  # fmt: skip
    # a session of its own, so that Ctrl-C can go to the whole process group as a terminal sends it
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for_markers([tmp_path / "stalled.fold_1", tmp_path / "stalled.fold_2"], proc)
    processes = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 130, err[-2000:]
    (line,) = err.strip().splitlines()  # one line, no traceback from the parent or the folds
    assert line.startswith("ensemble: stopped: interrupted (Ctrl-C): stopped fold_"), line
    assert "fold_1" in line and "fold_2" in line and "re-run the same command" in line, line
    assert processes and not _alive(processes), _alive(processes)
    for fold in ("fold_1", "fold_2"):  # the folds stopped cleanly, each with its checkpoint
        log = (out / "runs" / fold / "cell.log").read_text()
        assert "Traceback" not in log and "KeyboardInterrupt" not in log
        assert (out / "runs" / fold / "version_0" / "checkpoints" / "last.meta.json").is_file()


@pytest.mark.slow
def test_sigterm_to_a_ray_experiment_stops_every_cell_and_leaves_no_ray_process(tmp_path, splits):
    """``ray.init`` puts its own SIGTERM handler in place; the run still stops its cells (Ray cancels their tasks,
    each fit checkpoints) and names them, on a local Ray instance that it then shuts down."""
    marker = tmp_path / "stalled"
    fit = json.dumps(["--trainer.max_epochs", "4", "--trainer.rounds_per_epoch", "4",
                      "--trainer.callbacks+=killer.TreeStallOncePerCell", f"--trainer.callbacks.marker={marker}",
                      "--trainer.callbacks.epoch=1"])  # fmt: skip
    args = grid_args(splits, tmp_path / "exp", "--launcher", "ray", "--launcher.workers", "2", models="[lightgbm]",
                     fit=fit)  # fmt: skip
    before = _ray_processes()
    parent = subprocess.Popen([sys.executable, "-m", "ensemble.cli", *args], env={**ENV, "RAY_AUTH_MODE": "disabled"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_markers([tmp_path / f"stalled.{c}" for c in CELLS], parent)
    parent.send_signal(signal.SIGTERM)
    err = parent.communicate(timeout=180)[1].decode()
    assert parent.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("ensemble: stopped: SIGTERM received: stopped lightgbm_h"), line
    assert all(cell in line for cell in CELLS), line
    for cell in CELLS:  # the fits were stopped by the launcher, not killed: each checkpointed its epoch 1
        meta = tmp_path / "exp" / "runs" / cell / "version_0" / "checkpoints" / "last.meta.json"
        assert json.loads(meta.read_text())["global_step"] == 8
    time.sleep(1)
    assert not _ray_processes() - before, _ray_processes() - before


@pytest.mark.parametrize("address", ["10.255.255.1:6379", "ray://10.255.255.1:10001", "127.0.0.1:1"])
def test_an_unreachable_ray_address_is_one_line_within_seconds(address, tmp_path, splits, capfd):
    import ensemble.commands.experiment  # noqa: F401  (imported: the time measured is the address's)

    started = time.perf_counter()
    assert main(grid_args(splits, tmp_path / "exp", "--launcher", "ray", "--launcher.address", address)) == 2
    took = time.perf_counter() - started
    err = capfd.readouterr().err.strip().splitlines()  # the file descriptor: Ray's C++ logs would land there
    assert len(err) == 1 and f"launcher.address '{address}': " in err[0] and "Ray" in err[0], err
    assert took <= 5, f"{took:.1f} s"
    assert not (tmp_path / "exp" / "runs").exists()  # refused before any cell was planned


@pytest.mark.slow
def test_a_reachable_ray_address_still_works_and_leaves_no_ray_process(tmp_path, monkeypatch):
    from ensemble.launchers import CellSpec, LauncherSettings, make_launcher
    from ensemble.launchers.ray_launcher import probe

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    port, client = ports
    before = _ray_processes()
    # its own temp dir (short: Ray's socket paths must fit 107 bytes), so the `ray_current_cluster` record it
    # writes never sends another test's or user's address-less ray.init() to this head
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = ["ray", "start", "--head", "--port", str(port), "--ray-client-server-port", str(client), "--num-cpus",
            "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]  # fmt: skip
    # a throwaway cluster without Ray's token authentication (a `ray start` on a machine that holds a token in
    # ~/.ray turns it on, and this driver would need the token passed along): the head and this driver agree
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    subprocess.run(head, env={**ENV, "RAY_AUTH_MODE": "disabled"}, check=True, capture_output=True, timeout=180)
    try:
        probe(f"ray://127.0.0.1:{client}")  # the Ray Client server answers its PING: no error
        launcher = make_launcher(LauncherSettings(kind="ray", address=f"127.0.0.1:{port}"), threads=1)
        specs = [CellSpec(key, str(tmp_path / key), {}) for key in ("a", "b")]
        results = launcher.run(specs, __import__("launch_grid").pid_cell,
                               Progress(len(specs), lambda spec, result: Outcome("done", note=result.message)))
        assert [r.code for r in results] == [0, 0]
        assert all(r.message.startswith("pid ") and r.message != f"pid {os.getpid()}" for r in results)  # workers
    finally:  # stop the processes this head started, by pid (`ray stop` would stop every Ray of this user)
        ours = {pid for pid, _ in _ray_processes() - before}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in ours:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if not _alive(ours):
                break
        shutil.rmtree(temp, ignore_errors=True)
    assert ours and not _ray_processes() - before, _ray_processes() - before
