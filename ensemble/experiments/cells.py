"""One experiment cell: a fit in its own process, bound to the experiment's life, locked, and fingerprinted.

- **Bound to the parent.** The cell's process asks the kernel to SIGKILL it when its parent dies
  (``PR_SET_PDEATHSIG``), so killing an experiment, even with SIGKILL, never leaves an orphaned fit. SIGTERM
  or Ctrl-C (SIGINT) to the experiment sends SIGTERM to every running cell (each checkpoints and stops), starts
  no new one, and exits 143 (130 for Ctrl-C) naming the stopped cells; the cells themselves ignore Ctrl-C.
- **Locked.** ``<cell>/.lock`` is held (``flock``) while a process trains the cell; a second experiment on
  the same folder is refused in one line naming the holder's pid, instead of training the cell again beside it.
- **Fingerprinted.** ``<run>/cell.json`` records a hash of the cell's resolved config. A finished run whose
  fingerprint differs from the config now asked for is stale: the cell is re-run (or refused, as chosen).
- **Retried, resumed.** A fit process killed by a signal (a worker lost, the OOM killer) is started again up to
  the spec's ``retries`` times, resuming from the last checkpoint of the run it was writing. A re-run of the
  command resumes a cell that a stop or kill left unfinished the same way, when ``<cell>/started.json`` shows
  that run was started with the config asked for now; a run started with another config is never resumed.
- **On its slot.** The fit process sets its threads and ``CUDA_VISIBLE_DEVICES`` from the launcher's slot
  before building anything; the thread count reaches the tree libraries through ``model.init_args.n_jobs``,
  outside the fingerprint (threads change how fast a cell trains, not what it is).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ensemble.errors import ConfigError
from ensemble.io import missing_folders, remove_empty_folders, write_json
from ensemble.launchers.base import STOPPING as _STOPPING
from ensemble.launchers.base import (
    CellResult,
    CellSpec,
    CellStopped,
    Launcher,
    OnDone,
    Outcome,
    Slot,
    cell_entry,
    die_with_parent,
)
from ensemble.launchers.progress import Progress
from ensemble.training.family import family_for

_LIVE: dict[int, Any] = {}  # pid -> process of the cells this process's threads are running
_VOLATILE = ("tracking.parent_run_id",)  # differ between runs of the same cell, change nothing trained
CELL_RECORD = "cell.json"
STARTED = "started.json"  # <cell>/started.json: the fingerprint of the run the cell's last attempt started


def fingerprint(config: Mapping[str, Any]) -> str:
    """A hash (hex, 16 chars) of what defines a cell: its resolved config, minus the MLflow parent run."""
    clean = json.loads(json.dumps(config, sort_keys=True, default=str))
    for key in _VOLATILE:
        section, _, name = key.partition(".")
        (clean.get(section) or {}).pop(name, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]


def finished_runs(base: Path) -> list[tuple[Path, str | None]]:
    """(run folder, its fingerprint or None) of every finished run under ``base``, oldest first: its metrics hold
    test results, or val results when the run was fitted with ``test: false`` (its last stage is val). The
    fingerprint is its ``cell.json``'s, else (a stop between the run's end and that record) ``started.json``'s when
    the run is the one that attempt started."""
    done = []
    started = json.loads((base / STARTED).read_text()) if (base / STARTED).is_file() else None
    for metrics in sorted(base.glob("version_*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[1])):
        last = "val" if _fitted_without_test(metrics.parent) else "test"
        if f"{last}/f1_macro" not in json.loads(metrics.read_text()):
            continue
        record = metrics.parent / CELL_RECORD
        if record.is_file():
            done.append((metrics.parent, json.loads(record.read_text())["fingerprint"]))
        elif started is not None and metrics.parent.name not in started["before"]:
            # finished by the attempt started.json describes, stopped before its cell.json was written
            done.append((metrics.parent, started["fingerprint"]))
        else:
            done.append((metrics.parent, None))
    return done


def _fitted_without_test(run: Path) -> bool:
    """The run's own config says ``test: false`` (``ensemble fit --test false``)."""
    config = run / "config.yaml"
    return config.is_file() and (yaml.safe_load(config.read_text()) or {}).get("test") is False


def fit(config: dict[str, Any]) -> None:
    """A member cell's work: ``ensemble fit`` of its config."""
    from ensemble.training.family import build

    build(config).fit()


def _fit_cell(config: dict[str, Any], log: str, parent_pid: int, slot: Slot | None = None,
              work: Callable[[dict[str, Any]], None] = fit) -> None:  # fmt: skip
    """The cell's process: its output goes to the cell's log; a user error is its log's last line."""
    from ensemble.errors import EnsembleError
    from ensemble.training.config import resolve_config
    from ensemble.training.threads import apply_threads, thread_overrides

    die_with_parent(parent_pid)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    overrides: dict[str, Any] = {}
    if slot is not None:
        if slot.cuda_devices is not None:  # before anything initialises CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = slot.cuda_devices
        overrides = thread_overrides(config, slot.threads)
        applied = apply_threads(slot.threads)
        print(f"cell process {os.getpid()}: threads {applied['threads']} (torch {applied['torch']}, "
              f"tree n_jobs {overrides.get('model.init_args.n_jobs', 'as configured')}), "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)  # fmt: skip
    try:
        work(resolve_config(config, overrides))
    except EnsembleError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


@contextmanager
def cell_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` for the block.

    Raises:
        ConfigError: another live process holds it (its pid is named).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(f"{folder}: this cell is being trained by another process (pid {holder}); "
                              "wait for it or stop it first") from None  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cell(config: dict[str, Any], folder: Path, slot: Slot | None = None,
             work: Callable[[dict[str, Any]], None] = fit) -> tuple[int, str]:  # fmt: skip
    """Fit ``config`` (or run another ``work`` on it, a picklable function such as a walk-forward) in a fresh
    process (the caller holds the cell's lock); (exit code, last line of its log).
    The exit code is negative when a signal killed the process (-9: SIGKILL).

    Raises:
        CellStopped: SIGTERM or SIGINT reached this process (``stopping_cells``): the cell's process was stopped
            first (it checkpoints on the way out), or it was never started.
    """
    log = folder / "cell.log"
    if _STOPPING:  # a worker thread freed by a stopped cell must not start the next one
        raise CellStopped(folder.name, False, _STOPPING[0])
    spawn = multiprocessing.get_context("spawn")
    payload = pickle.dumps((_fit_cell, (config, str(log), os.getpid(), slot, work)))
    proc = spawn.Process(target=cell_entry, args=(payload,))
    proc.start()
    _LIVE[proc.pid] = proc
    try:
        if _STOPPING:  # the signal came between the check above and the registration
            proc.terminate()
        while proc.exitcode is None:  # short joins: Ray cancels a task by raising in its thread between bytecodes
            proc.join(0.5)
    except BaseException:  # e.g. Ray cancelling the task: the fit checkpoints and stops before we go on
        proc.terminate()
        proc.join()
        raise
    finally:
        _LIVE.pop(proc.pid, None)
    if _STOPPING:
        raise CellStopped(folder.name, True, _STOPPING[0])
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    code = proc.exitcode or 0
    if not lines and code != 0:  # died before _fit_cell opened its log: most often an unguarded calling script
        return code, (f"its process exited with code {code} before it started (no {log}); a script that runs "
                      "an experiment or walk-forward must guard its top level with `if __name__ == \"__main__\":`, "
                      "since each cell starts in a spawned process that imports the script")  # fmt: skip
    return code, (lines or ["no output"])[-1]


def stop_running_cells(signum: int = signal.SIGTERM) -> None:
    """Stop every running cell: SIGTERM to its process (it checkpoints and exits); each ``run_cell`` then raises
    ``CellStopped`` instead of reporting a failure or retrying, and no new cell starts."""
    _STOPPING.append(signum)
    for proc in list(_LIVE.values()):
        proc.terminate()


@contextmanager
def stopping_cells() -> Iterator[None]:
    """For the block, SIGTERM and SIGINT (Ctrl-C) to this process stop every running cell
    (``stop_running_cells``) rather than kill this process mid-run; the launcher then raises one ``Preempted``
    naming the stopped cells. Main thread only, as Python's signal handlers are (elsewhere a no-op)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOPPING.clear()  # a new run in this process (tests call the CLI in-process) starts unstopped
    handler = lambda signum, frame: stop_running_cells(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def record_cell(run_dir: Path, config: Mapping[str, Any]) -> None:
    """Write the finished run's ``cell.json``: the fingerprint and the config it stands for."""
    write_json(run_dir / CELL_RECORD, {"fingerprint": fingerprint(config), "config": dict(config)})


def check_writable(folder: Path, leave_nothing: bool = False) -> str | None:
    """None if this process can create ``folder`` and write in it, else why not (one line).

    ``leave_nothing``: remove again the folders the probe had to create, so a run refused after the check
    leaves no empty folder behind; only where no other process can be creating folders inside them (the
    experiment's own check, before any cell starts), as a removal would race with them.
    """
    made = missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        return (f"{folder}: cannot write there ({err.strerror or err}); on a cluster the "
                "experiment's out must be a filesystem every node shares")  # fmt: skip
    if leave_nothing:
        remove_empty_folders(made)
    return None


def interrupted_run(config: Mapping[str, Any], folder: Path) -> tuple[Path | None, Path | None]:
    """What an earlier attempt at this cell left unfinished (a stop, a kill of the whole run): (the checkpoint to
    resume it from, None) when ``started.json`` shows its run was started with ``config``'s fingerprint; (None,
    that run) when it was started with another config (it is never resumed); (None, None) when there is none."""
    record = folder / STARTED
    resume = resume_point(config, folder)
    if resume is None or not record.is_file():
        return None, None
    started = json.loads(record.read_text())
    run = resume.parent.parent
    if run.name in started["before"]:  # an older run than the one the record describes
        return None, None
    return (resume, None) if started["fingerprint"] == fingerprint(config) else (None, run)


def resume_point(config: Mapping[str, Any], folder: Path) -> Path | None:
    """The last checkpoint of the newest run under ``folder`` when that run is unfinished (the run a killed
    fit was writing), else None: a retry never resumes an older, finished run."""
    versions = sorted(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not versions or versions[-1] in {run for run, _ in finished_runs(folder)}:
        return None
    found = sorted((versions[-1] / "checkpoints").glob(family_for(config).checkpoint_patterns["last"]))
    return found[-1] if found else None


def run_cell_spec(spec: CellSpec, slot: Slot) -> CellResult:
    """A launcher's ``run_one`` for experiment cells: check the folder is writable (on the node that runs the
    cell), then ``run_cell`` on ``slot``, resuming the run an earlier attempt left unfinished with the same config
    (``interrupted_run``); a process killed by a signal is run again, resuming from its last checkpoint, up to
    ``spec.retries`` times.

    Raises:
        ConfigError: the cell is locked by another live process.
        CellStopped: SIGTERM or SIGINT reached this process while the cell ran (or before it started).
    """
    started = time.perf_counter()
    folder = Path(spec.folder)
    why = check_writable(folder)
    if why is not None:
        return CellResult(spec.key, 2, why, time.perf_counter() - started, 0)
    with cell_lock(folder):
        resume, _ = interrupted_run(spec.config, folder)
        config, attempts = spec.config, 0
        if resume is None:  # a fresh run: record what it is started with, so that a re-run can resume it
            before = sorted(p.name for p in folder.glob("version_*"))
            write_json(folder / STARTED, {"fingerprint": fingerprint(spec.config), "before": before})
        else:
            config = {**spec.config, "ckpt_path": str(resume)}
            with open(folder / "cell.log", "a") as log:
                log.write(f"resuming the interrupted run from {resume}\n")
        while True:
            attempts += 1
            code, message = run_cell(config, folder, slot, spec.work or fit)
            if code >= 0 or attempts > spec.retries:
                break
            resume = resume_point(spec.config, folder)
            config = {**spec.config, "ckpt_path": str(resume)} if resume is not None else spec.config
            with open(folder / "cell.log", "a") as log:  # the retry's reason, in the cell's own record
                log.write(f"cell process killed by signal {-code}; retry {attempts} of {spec.retries}, "
                          f"{f'resuming from {resume}' if resume else 'from the start (no checkpoint yet)'}\n")
    return CellResult(spec.key, code, message, time.perf_counter() - started, attempts)


def run_cells(launcher: Launcher, todo: list[CellSpec], skipped: list[tuple[str, Outcome]], total: int,
              on_done: OnDone, label: str = "cells") -> None:  # fmt: skip
    """Run ``todo`` with ``launcher`` (each cell through ``run_cell_spec``) under one progress bar of ``total``
    cells, the ``skipped`` ones (key, outcome: finished earlier) reported first; SIGTERM and Ctrl-C stop every
    running cell (``stopping_cells``).

    Raises:
        Preempted: a signal stopped the run (the one line names every stopped cell).
    """
    with Progress(total, on_done, label=label) as progress:
        for cell, outcome in skipped:
            progress.finish(cell, outcome)
        if todo:
            with stopping_cells():  # SIGTERM, Ctrl-C: every running cell checkpoints and stops
                launcher.run(todo, run_cell_spec, progress)
