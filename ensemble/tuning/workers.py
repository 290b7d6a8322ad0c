"""``ensemble tune --tune.workers N``: N local worker processes on one study, one slot (GPU, or share of the
cores) each.

The parent checks the settings and creates the study (and its MLflow parent run) once, so the workers never
race to create it; each worker then runs its share of ``n_trials`` with Optuna's own sharing of the study
through its storage, exactly as ``ensemble tune`` processes started by hand on many machines do
(docs/scaling.md). Workers' output goes to ``<out>/worker_<i>.log``; while they run, the parent prints one line
per finished trial, read from the storage (``trial_lines.py``), and writes the study's outputs once all have
ended.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import sys
from pathlib import Path
from typing import Any

import optuna

from ensemble.errors import ConfigError, EnsembleError, Preempted
from ensemble.launchers.base import Slot, die_with_parent
from ensemble.launchers.local import local_slots
from ensemble.launchers.progress import Progress
from ensemble.training.config import resolve_config
from ensemble.training.family import on_sigterm
from ensemble.training.threads import apply_threads, check_threads, thread_overrides
from ensemble.tuning.study import (
    TuneConfig,
    announce_seed,
    finish_study,
    objective_label,
    open_storage,
    open_study,
    tune,
)
from ensemble.tuning.trial_lines import TrialLines

IN_MEMORY = ("sqlite:", "sqlite:///:memory:")  # SQLAlchemy's in-memory SQLite URLs, trailing slashes stripped
POLL_S = 1.0  # how often the parent reads the storage for finished trials


class TuneWorkerError(EnsembleError):
    """A tuning worker process failed; the message names it and its log's last line."""


def trial_shares(n_trials: int, workers: int) -> list[int]:
    """``n_trials`` split as evenly as possible over ``workers`` (the first ones take the remainder)."""
    return [n_trials // workers + (i < n_trials % workers) for i in range(workers)]


def threaded_base(base: dict[str, Any], threads: int) -> dict[str, Any]:
    """Apply ``threads`` to this process and to the trials' tree libraries (``model.init_args.n_jobs``)."""
    apply_threads(threads)
    return resolve_config(base, thread_overrides(base, threads))


def _worker(cfg: TuneConfig, base: dict[str, Any], config_dir: Path | None, slot: Slot, log: str,
            parent_pid: int, number: int) -> None:  # fmt: skip
    """Worker ``number``'s process: its slot's device and threads, then its share of the trials."""
    die_with_parent(parent_pid)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if slot.cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.cuda_devices
    try:
        tune(cfg, threaded_base(base, slot.threads), config_dir, report=False, worker=number)
    except EnsembleError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def tune_in_workers(cfg: TuneConfig, base: dict[str, Any], config_dir: Path | None = None,
                    threads: int | None = None) -> optuna.Study:  # fmt: skip
    """Run ``cfg.n_trials`` trials in all, spread over ``cfg.workers`` processes on one study.

    Raises:
        ConfigError, SearchSpaceError, StorageError: before any worker starts.
        TuneWorkerError: a worker exited with an error (after the others ended and the outputs were written).
        Preempted: SIGTERM arrived; the workers were terminated.
    """
    check_threads(cfg.workers, "tune.workers")
    if cfg.workers > 1 and cfg.storage.rstrip("/") in IN_MEMORY:
        raise ConfigError(f"--tune.storage {cfg.storage} is in memory: each of the {cfg.workers} worker processes "
                          "would get its own study; use a file (sqlite:///optuna.db) or a server all can open")
    study = open_study(cfg, base, config_dir)[0]  # checks everything and creates the study once
    announce_seed(base)
    out = Path(cfg.out or Path("tune") / str(cfg.study_name))
    out.mkdir(parents=True, exist_ok=True)
    spawn = multiprocessing.get_context("spawn")
    procs = []
    slots = local_slots(cfg.workers, threads)
    for i, (slot, share) in enumerate(zip(slots, trial_shares(cfg.n_trials, cfg.workers), strict=True)):
        if share:
            seed = None if cfg.seed is None else cfg.seed + i  # each worker its own sampler seed
            mine = dataclasses.replace(cfg, n_trials=share, seed=seed, workers=1)
            log = out / f"worker_{i}.log"
            args = (mine, base, config_dir, slot, str(log), os.getpid(), i)
            procs.append((log, spawn.Process(target=_worker, args=args)))
    stop: list[bool] = []
    terminate = lambda: (stop.append(True), [p.terminate() for _, p in procs])  # noqa: E731
    with on_sigterm(terminate), Progress(cfg.n_trials, label="trials") as progress:
        watch = TrialLines(study, objective_label(cfg.metric), progress)  # the value before calibration
        for _, proc in procs:
            proc.start()
        while any(proc.is_alive() for _, proc in procs):  # a line per trial as the workers finish them
            multiprocessing.connection.wait([proc.sentinel for _, proc in procs], timeout=POLL_S)
            watch.poll()
        for _, proc in procs:
            proc.join()
        watch.poll()
    if stop:
        raise Preempted("SIGTERM received: the tuning workers were stopped; re-run the same command to go on")
    study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage))
    finish_study(study, cfg, base)
    failed = [(log, proc.exitcode) for log, proc in procs if proc.exitcode != 0]
    if failed:
        log, code = failed[0]
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        raise TuneWorkerError(f"{len(failed)} tuning worker(s) failed; {log.name} exited {code}: "
                              f"{(lines or ['no output'])[-1]}")  # fmt: skip
    return study
