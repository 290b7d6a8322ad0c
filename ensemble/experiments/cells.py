"""One experiment cell: a fit in its own process, bound to the experiment's life, locked, and fingerprinted.

- **Bound to the parent.** The cell's process asks the kernel to SIGKILL it when its parent dies
  (``PR_SET_PDEATHSIG``), so killing an experiment, even with SIGKILL, never leaves an orphaned fit; SIGTERM
  to the experiment terminates the running cell and exits 143.
- **Locked.** ``<cell>/.lock`` is held (``flock``) while a process trains the cell; a second experiment on
  the same folder is refused in one line naming the holder's pid, instead of training the cell again beside it.
- **Fingerprinted.** ``<run>/cell.json`` records a hash of the cell's resolved config. A finished run whose
  fingerprint differs from the config now asked for is stale: the cell is re-run (or refused, as chosen).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ensemble.errors import ConfigError, Preempted
from ensemble.io import write_json
from ensemble.training.family import on_sigterm

_VOLATILE = ("tracking.parent_run_id",)  # differ between runs of the same cell, change nothing trained
CELL_RECORD = "cell.json"


def fingerprint(config: Mapping[str, Any]) -> str:
    """A hash (hex, 16 chars) of what defines a cell: its resolved config, minus the MLflow parent run."""
    clean = json.loads(json.dumps(config, sort_keys=True, default=str))
    for key in _VOLATILE:
        section, _, name = key.partition(".")
        (clean.get(section) or {}).pop(name, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]


def finished_runs(base: Path) -> list[tuple[Path, str | None]]:
    """(run folder, its fingerprint or None) of every run under ``base`` whose metrics hold test results,
    oldest first."""
    done = []
    for metrics in sorted(base.glob("version_*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[1])):
        if "test/f1_macro" not in json.loads(metrics.read_text()):
            continue
        record = metrics.parent / CELL_RECORD
        done.append((metrics.parent, json.loads(record.read_text())["fingerprint"] if record.is_file() else None))
    return done


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def fit(config: dict[str, Any]) -> None:
    """A member cell's work: ``ensemble fit`` of its config."""
    from ensemble.training.family import build

    build(config).fit()


def _fit_cell(config: dict[str, Any], log: str, parent_pid: int, work: Callable[[dict[str, Any]], None]) -> None:
    """The cell's process: its output goes to the cell's log; a user error is its log's last line."""
    from ensemble.errors import EnsembleError

    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        work(config)
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


def run_cell(config: dict[str, Any], folder: Path, work: Callable[[dict[str, Any]], None] = fit) -> tuple[int, str]:
    """Fit ``config`` (or run another ``work`` on it, a picklable function such as a walk-forward) in a fresh
    process while holding the cell's lock; (exit code, last line of its log).

    Raises:
        ConfigError: the cell is locked by another live process.
        Preempted: SIGTERM arrived; the running cell was terminated first.
    """
    log = folder / "cell.log"
    with cell_lock(folder):
        proc = multiprocessing.get_context("spawn").Process(target=_fit_cell,
                                                             args=(config, str(log), os.getpid(), work))
        stop: list[bool] = []
        with on_sigterm(lambda: (stop.append(True), proc.terminate())):
            proc.start()
            proc.join()
        if stop:
            raise Preempted(f"SIGTERM received: cell {folder.name} was stopped; re-run the experiment to go on "
                            "(finished cells are skipped)")  # fmt: skip
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return proc.exitcode or 0, (lines or ["no output"])[-1]


def record_cell(run_dir: Path, config: Mapping[str, Any]) -> None:
    """Write the finished run's ``cell.json``: the fingerprint and the config it stands for."""
    write_json(run_dir / CELL_RECORD, {"fingerprint": fingerprint(config), "config": dict(config)})
