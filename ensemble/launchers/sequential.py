"""``--launcher sequential``: one cell at a time in this process's order, each in its own fit process
(today's behaviour), with all of this process's cores."""

from __future__ import annotations

from collections.abc import Sequence

from ensemble.launchers.base import CellResult, CellSpec, CellStopped, Launcher, RunOne, Slot, stopped_run
from ensemble.launchers.progress import Progress
from ensemble.training.threads import default_threads


class SequentialLauncher(Launcher):
    """Run the cells one after another; a failed cell is reported by its result and the next one starts."""

    def run(self, specs: Sequence[CellSpec], run_one: RunOne, progress: Progress) -> list[CellResult]:
        slot = Slot(self.threads or default_threads(1))  # every GPU stays visible to the one cell running
        results: list[CellResult] = []
        for spec in specs:
            progress.start(spec)
            try:
                results.append(run_one(spec, slot))
            except CellStopped as stop:  # a signal: this cell checkpointed and stopped, no later one starts
                waiting = [CellStopped(s.key, False, stop.EXIT_CODE - 128) for s in specs[len(results) + 1:]]
                raise stopped_run([stop, *waiting]) from None
            progress.done(spec, results[-1])
        return results
