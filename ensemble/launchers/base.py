"""The launcher contract: independent cell specs in, one result per cell out, the same for every launcher.

A *cell* is one fit that depends on no other (an experiment's model x horizon, a walk-forward fold). The
caller gives a launcher the specs and ``run_one(spec, slot)``, a module-level (picklable) function that runs
one cell in a fresh process on the ``slot`` it is given (its thread count and GPU) and returns its
``CellResult``; the launcher only decides where and when each call happens. What a cell means (locks, resume,
records) stays with the caller, so every launcher has the same semantics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ensemble.errors import ConfigError, Preempted
from ensemble.training.threads import check_threads

if TYPE_CHECKING:
    from ensemble.launchers.progress import Progress

LAUNCHERS = ("sequential", "local", "ray")
_SAID = {15: "SIGTERM received", 2: "interrupted (Ctrl-C)"}  # what stopped the run, by signal number
STOPPING: list[int] = []  # the signal (SIGTERM, SIGINT) that asked this process's running cells to stop


@dataclass(frozen=True)
class Slot:
    """Where a cell runs: ``threads`` for torch/OpenMP/tree libraries, ``cuda_devices`` the value of
    ``CUDA_VISIBLE_DEVICES`` for its process (None: left as inherited, e.g. set by Ray)."""

    threads: int
    cuda_devices: str | None = None


@dataclass(frozen=True)
class CellSpec:
    """One independent cell: ``key`` names it (``xgboost_h5``), ``folder`` holds its lock, log and runs,
    ``config`` is its resolved run config; a fit killed mid-cell is retried up to ``retries`` times. ``work``:
    what the cell's process does with the config, a picklable module-level function (None: ``ensemble fit``;
    e.g. a walk-forward of it)."""

    key: str
    folder: str
    config: dict[str, Any]
    retries: int = 1
    work: Callable[[dict[str, Any]], None] | None = None


@dataclass
class CellResult:
    """A finished cell: exit ``code`` (0 done, > 0 failed, < 0 killed by that signal), ``message`` (the last
    line of its log, or why it did not start), ``wall_s`` seconds from start to end (retries included),
    ``attempts`` fits started."""

    key: str
    code: int
    message: str
    wall_s: float
    attempts: int = 1


@dataclass(frozen=True)
class Outcome:
    """What a finished cell's progress line says (``progress.cell_line``).

    Args:
        state: ``done``, ``failed`` or ``skipped`` (finished by an earlier run); a tuning trial's ``complete``,
            ``pruned`` or ``failed``.
        metric: the cell's key metric, e.g. ``val/log_loss`` (the checkpoint monitor) or ``oof/log_loss`` (a
            walk-forward's); None when there is none (a failed cell).
        value: that metric's value (None: not recorded).
        note: the run folder, or why the cell failed.
    """

    state: str
    metric: str | None = None
    value: float | None = None
    note: str = ""


class CellStopped(Preempted):
    """A cell stopped by a signal (SIGTERM, SIGINT) to the launching process: ``key``; ``started``: its fit was
    running (and checkpointed on the way out), else it was never started."""

    def __init__(self, key: str, started: bool, signum: int) -> None:
        self.key, self.started = key, started
        super().__init__(stopped_message([key] if started else [], 0 if started else 1, signum), signum)


def stopped_message(interrupted: Sequence[str], not_started: int, signum: int) -> str:
    """The one line that ends a stopped run: the signal, every interrupted cell by name, how many never started,
    and how to go on (the same command resumes each interrupted cell from its last checkpoint)."""
    said = _SAID.get(signum, f"signal {signum} received")
    stopped = f"stopped {', '.join(interrupted)}" if interrupted else "no cell was running"
    waiting = f", {not_started} not started" if not_started else ""
    return (f"{said}: {stopped}{waiting}; re-run the same command to go on (finished cells are skipped, "
            "stopped ones resume from their last checkpoint)")


def stopped_run(stops: Sequence[CellStopped]) -> Preempted:
    """One ``Preempted`` for all the cells a signal stopped (``stops``, non-empty), naming each running one."""
    running = [s.key for s in stops if s.started]
    return Preempted(stopped_message(running, len(stops) - len(running), stops[0].EXIT_CODE - 128),
                     stops[0].EXIT_CODE - 128)  # fmt: skip


RunOne = Callable[[CellSpec, Slot], CellResult]
OnDone = Callable[[CellSpec, CellResult], Outcome]  # records the result; returns what its progress line says


@dataclass
class LauncherSettings:
    """How cells are launched (``--launcher``, ``--launcher.*``; ``launcher: {kind: local, ...}`` in YAML).

    Args:
        kind: ``sequential`` (one cell at a time, today's behaviour), ``local`` (``workers`` cells at once on
            this machine) or ``ray`` (each cell a Ray task).
        workers: cells at once (``local``; for ``ray`` the size of a local Ray instance). Default: one per
            visible GPU, else 1.
        address: ``ray`` only: an existing cluster (``auto``, ``host:6379``, ``ray://head:10001``); none starts
            a local Ray instance for the run and stops it afterwards.
        retries: how often a cell whose process died (a signal, a lost Ray node) is retried; it resumes from
            its last checkpoint.
        gpus_per_cell: ``ray`` only: GPUs each cell's task asks for (default: 1 when the cell trains on a GPU).
    """

    kind: str = "sequential"
    workers: int | None = None
    address: str | None = None
    retries: int = 1
    gpus_per_cell: float | None = None

    def check(self) -> LauncherSettings:
        """Raises ConfigError (one line, naming the key) for a bad value."""
        if self.kind not in LAUNCHERS:
            raise ConfigError(f"launcher must be one of {', '.join(LAUNCHERS)}, got '{self.kind}'")
        if self.workers is not None:
            check_threads(self.workers, "launcher.workers")
        if self.retries < 0:
            raise ConfigError(f"launcher.retries must be >= 0, got {self.retries}")
        if self.workers is not None and self.kind == "sequential":  # it would be silently ignored
            raise ConfigError(f"launcher.workers is for --launcher local or ray, not 'sequential' (got workers "
                              f"{self.workers}); add --launcher local")  # fmt: skip
        if self.address is not None and self.kind != "ray":
            raise ConfigError(f"launcher.address is for --launcher ray, not '{self.kind}'")
        return self


def die_with_parent(parent_pid: int) -> None:
    """In a child process: ask Linux to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG``), so killing
    the launching process, even with SIGKILL, never leaves an orphaned fit; exit at once if the parent is
    already gone (it died before the signal was armed). No-op off Linux."""
    import ctypes
    import os
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def cell_entry(payload: bytes) -> None:
    """A cell process's entry (light: nothing heavy is imported before it runs). It ignores SIGINT first: Ctrl-C
    reaches the whole process group, and the launching process stops its cells itself, with SIGTERM, so each
    checkpoints and exits cleanly instead of printing a traceback. Then it calls ``payload``, a pickled
    ``(function, args)``."""
    import pickle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    function, args = pickle.loads(payload)
    function(*args)


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries (empty on a CPU machine)."""
    import os

    import torch

    count = torch.cuda.device_count()
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


@dataclass
class Launcher(ABC):
    """Runs cells; ``threads`` is each cell process's thread count (None: its share of the usable cores)."""

    settings: LauncherSettings = field(default_factory=LauncherSettings)
    threads: int | None = None

    def __post_init__(self) -> None:
        """Check, as the launcher is made and before any cell is planned, that it can run (its settings; a
        subclass adds its own, e.g. that a Ray cluster answers). Raises ConfigError in one line."""
        self.settings.check()

    @abstractmethod
    def run(self, specs: Sequence[CellSpec], run_one: RunOne, progress: Progress) -> list[CellResult]:
        """Run every cell once (a failed one does not stop the others); results in the order of ``specs``.
        ``progress.start`` is called as a cell starts and ``progress.done`` (which records the result and prints
        its line) in this process as it finishes; the caller owns ``progress`` (its total, skipped cells, bar)."""
