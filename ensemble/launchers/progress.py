"""Progress over cells: one bar (done / running / failed) on a terminal, and one plain line per finished
cell everywhere. The cells' own output (epochs, library logs) goes to their ``cell.log`` only, so many
workers never interleave their bars."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from ensemble import console
from ensemble.launchers.base import CellResult, CellSpec, OnDone


class Progress:
    """Counts cells as a launcher starts and finishes them; ``on_done`` records each result and gives the
    detail printed on its line (e.g. ``done in 12s, val/f1_macro 0.4123 (runs/xgboost_h5/version_0)``)."""

    def __init__(self, total: int, on_done: OnDone, label: str = "cells") -> None:
        self.total, self.on_done = total, on_done
        self.finished = self.failed = self.running = 0
        self.started = time.perf_counter()
        self.bar: Any = None
        self._lock = threading.Lock()  # the local launcher's worker threads start cells
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="cell", file=sys.stderr, dynamic_ncols=True)

    def start(self, spec: CellSpec) -> None:
        """A cell's process is starting."""
        with self._lock:
            self.running += 1
            self._refresh()

    def done(self, spec: CellSpec, result: CellResult) -> None:
        """A cell ended (done or failed): record it through ``on_done`` and print its line."""
        detail = self.on_done(spec, result)
        with self._lock:
            self.running = max(0, self.running - 1)
            self.finished += 1
            self.failed += result.code != 0
            line = f"[{self.finished}/{self.total}] {spec.key}: {detail}"
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

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}", refresh=True)
