"""Progress over cells: one plain line per finished cell everywhere, in one format whatever runs the cells (the
``sequential``, ``local`` and ``ray`` launchers, a walk-forward's folds in its own process, ``tune --tune.workers``
trials), and one bar (done / running / failed) only when stderr is a terminal. The cells' own output (epochs,
library logs) goes to their ``cell.log`` only, so many workers never interleave their bars.

A line: ``[2/4] lightgbm_h5: done in 25s, val/log_loss 1.0983 (runs/lightgbm_h5/version_0)``; the state is
``done``, ``failed`` or ``skipped`` (a tuning trial's ``complete``, ``pruned`` or ``failed``), the metric is the
cell's key metric (``key_metric``), the parentheses hold where its run is or why it failed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from ensemble import console
from ensemble.launchers.base import CellResult, CellSpec, OnDone, Outcome

DEFAULT_MONITOR = "val/log_loss"  # the families' checkpoint.monitor when a config sets none


def cell_line(number: int, total: int, key: str, outcome: Outcome, wall_s: float | None = None) -> str:
    """The one progress line of a finished cell, e.g. ``[2/4] lightgbm_h5: done in 25s, val/log_loss 1.0983
    (runs/lightgbm_h5/version_0)``: ``number`` of ``total`` cells finished, ``wall_s`` its wall time in seconds
    (left out for a cell skipped as finished earlier, which took none in this run)."""
    head = outcome.state + (" (finished earlier)" if outcome.state == "skipped" else "")
    if wall_s is not None and outcome.state != "skipped":
        head += f" in {wall_s:.0f}s"
    if outcome.metric is not None:
        value = "-" if outcome.value is None else f"{outcome.value:.4f}"
        head += f", {outcome.metric} {value}"
    return f"[{number}/{total}] {key}: {head}" + (f" ({outcome.note})" if outcome.note else "")


def monitor(config: dict[str, Any]) -> str:
    """The metric a run's checkpoint selects on: ``checkpoint.monitor`` (``val/log_loss`` when unset)."""
    return (config.get("checkpoint") or {}).get("monitor") or DEFAULT_MONITOR


def key_metric(config: dict[str, Any], metrics: Path, stage: str = "val", shown: str | None = None
               ) -> tuple[str, float | None]:  # fmt: skip
    """(name, value) of a finished cell's key metric: the checkpoint monitor's metric read at ``stage`` from the
    ``metrics`` file (``metrics.json``), named ``<shown or stage>/<metric>``. A plain cell: ``val``; a
    walk-forward: ``oof`` (its stitched out-of-fold predictions); a fold: its ``test`` block, shown as ``oof``.
    The value is None when the file does not hold it."""
    name = monitor(config).split("/", 1)[-1]
    recorded = json.loads(metrics.read_text()) if metrics.is_file() else {}
    value = recorded.get(f"{stage}/{name}")
    return f"{shown or stage}/{name}", float(value) if isinstance(value, int | float) else None


def terminal_columns() -> int:
    """The width stderr's terminal reports (0 rows and columns when it reports no size); 0 when it reports none
    or stderr is no terminal."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        return size.columns if size.lines > 0 else 0
    except (OSError, ValueError):  # not a terminal, or stderr replaced by an object without a descriptor
        return 0


class Progress:
    """Counts cells as they are skipped, started and finished; prints a line per finished one (``cell_line``)
    and, on a terminal, draws one bar over all of them.

    Args:
        total: cells in all, the skipped ones included.
        on_done: records a launcher's finished cell and says what its line says (``done``); None when every
            cell is reported through ``finish``.
        label: the bar's name (``cells``, ``folds``, ``trials``).
        bar: draw the bar; None: when stderr is a terminal and the level is normal (never under ``--quiet``).
    """

    def __init__(self, total: int, on_done: OnDone | None = None, label: str = "cells",
                 bar: bool | None = None) -> None:  # fmt: skip
        self.total, self.on_done = total, on_done
        self.finished = self.failed = self.running = 0
        self.bar: Any = None
        self._lock = threading.Lock()  # the local launcher's worker threads start cells
        if bar is None:
            bar = sys.stderr.isatty() and console.level() >= console.NORMAL
        if bar:
            from tqdm import tqdm

            # a terminal that reports no size (``script``, ``docker exec -t``, some CI ptys): tqdm reads 0 rows
            # and hides the bar as "more hidden"; draw it 80 columns wide in 24 rows there
            sized = terminal_columns() > 0
            self.bar = tqdm(total=total, desc=label, unit=label.rstrip("s") or "cell", file=sys.stderr,
                            dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24)  # fmt: skip
            self._refresh()

    def start(self, spec: CellSpec | str) -> None:
        """A cell (its spec or key) is starting."""
        with self._lock:
            self.running += 1
            self._refresh()

    def set_running(self, count: int) -> None:
        """``count`` cells are running now (as seen from outside, e.g. a study's running trials)."""
        with self._lock:
            self.running = count
            self._refresh()

    def done(self, spec: CellSpec, result: CellResult) -> None:
        """A launcher's cell ended (done or failed): record it through ``on_done`` and print its line."""
        if self.on_done is None:
            raise TypeError("Progress.done needs the on_done given to Progress")
        self.finish(spec.key, self.on_done(spec, result), result.wall_s, started=True)

    def finish(self, key: str, outcome: Outcome, wall_s: float | None = None, started: bool = False) -> None:
        """Cell ``key`` ended with ``outcome`` after ``wall_s`` seconds (``started``: ``start`` was called for
        it); print its line and move the bar."""
        with self._lock:
            self.running = max(0, self.running - started)
            self.finished += 1
            self.failed += outcome.state == "failed"
            line = cell_line(self.finished, self.total, key, outcome, wall_s)
            if self.bar is not None:
                self.bar.write(line, file=sys.stdout)
                self.bar.update(1)
            else:
                console.say(line)
            self._refresh()

    def close(self) -> None:
        """End the bar (nothing to do without a terminal)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}", refresh=True)
