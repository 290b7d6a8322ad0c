"""``--launcher local``: ``workers`` cells at once on this machine, each on its own slot.

A slot is one GPU (``CUDA_VISIBLE_DEVICES``, round robin when there are more workers than GPUs) or, on a
CPU machine, an equal share of the usable cores (each cell's torch, OpenMP and tree-library threads). The
pool is threads of this process, each waiting on its cell's own fit process, so the cells stay isolated
processes as under ``sequential``; a fit process that dies is retried by ``run_one`` (``launcher.retries``).
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from ensemble.launchers.base import (
    CellResult,
    CellSpec,
    CellStopped,
    Launcher,
    RunOne,
    Slot,
    stopped_run,
    visible_gpus,
)
from ensemble.launchers.progress import Progress
from ensemble.training.threads import default_threads


def local_slots(workers: int | None, threads: int | None) -> list[Slot]:
    """One slot per worker: ``workers`` (default: one per visible GPU, else 1), each with ``threads`` (default:
    its share of the usable cores) and, when there are GPUs, one of them."""
    gpus = visible_gpus()
    count = workers or max(1, len(gpus))
    per = threads or default_threads(count)
    return [Slot(per, gpus[i % len(gpus)] if gpus else None) for i in range(count)]


class LocalLauncher(Launcher):
    """A pool of ``workers`` slots; each free slot takes the next cell."""

    def run(self, specs: Sequence[CellSpec], run_one: RunOne, progress: Progress) -> list[CellResult]:
        slots: queue.Queue[Slot] = queue.Queue()
        for slot in local_slots(self.settings.workers, self.threads):
            slots.put(slot)

        def on_slot(spec: CellSpec) -> CellResult:
            slot = slots.get()
            try:
                progress.start(spec)
                return run_one(spec, slot)
            finally:
                slots.put(slot)

        results: dict[str, CellResult] = {}
        stops: list[CellStopped] = []
        with ThreadPoolExecutor(max_workers=slots.qsize(), thread_name_prefix="cell") as pool:
            futures = {pool.submit(on_slot, spec): spec for spec in specs}
            try:
                for future in as_completed(futures):
                    spec = futures[future]
                    try:
                        results[spec.key] = future.result()  # a caller's error (a held lock) stops the run
                    except CellStopped as stop:  # a signal stopped every cell: gather them all, then stop
                        stops.append(stop)
                        continue
                    progress.done(spec, results[spec.key])
            except BaseException:
                for future in futures:  # cells not started yet never start; running ones finish
                    future.cancel()
                raise
        if stops:
            raise stopped_run(stops)
        return [results[spec.key] for spec in specs]
