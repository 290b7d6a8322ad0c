"""The folds of one walk-forward in their own processes, several at once (``--launcher local|ray``).

Each fold is a launcher cell whose process loads the span and cuts the folds itself (``fold.load_folds``: the same
folds, as they are cut deterministically) and runs its own. The semantics are sequential's:

- **Skipped when finished.** A fold whose run holds its test metrics is not started again.
- **Refit folds first.** With ``wf.refit_every k > 1`` the folds in between evaluate an earlier fold's model, so
  they run in a second wave once their refit folds have finished.
- **Failures.** A failed fold is reported on its line and the other folds go on; the walk-forward then stops
  before stitching, in one line naming the failed folds and their ``cell.log``.
- **Retried.** A fold process killed by a signal is run again (``launcher.retries``), resuming its run from the
  last checkpoint (``experiments.cells.run_cell_spec``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ensemble.errors import ConfigError
from ensemble.experiments.cells import run_cell_spec, stopping_cells
from ensemble.launchers import CellResult, CellSpec, Launcher, Outcome, Progress
from ensemble.walkforward.config import WalkForward
from ensemble.walkforward.fold import (
    Fold,
    finished_fold,
    fold_outcome,
    fold_resume_point,
    load_folds,
    refit_fold,
    run_fold,
    span_data,
)
from ensemble.walkforward.outputs import WalkForwardError


def fold_cell(settings: dict[str, Any], out: str, number: int, reuse: str | None, config: dict[str, Any]) -> None:
    """A fold's work in its own process (a ``CellSpec.work``): cut the folds of ``config`` with the ``wf`` settings
    ``settings`` (``WalkForward.record()``) and run fold ``number`` into ``out`` (with ``reuse``, on that finished
    run's model). A ``ckpt_path`` in ``config`` (a retry) resumes the fold's run; without one, an unfinished run
    a stopped or killed attempt left is resumed from its last checkpoint, as a sequential re-run does. The fold's
    training prints as ``ensemble fit`` prints: the process's output is the fold's ``cell.log``.

    Raises:
        ConfigError: fold ``number`` is not among the folds cut (the span changed under the walk-forward).
    """
    wf, root = WalkForward(**settings), Path(out)
    base = root / "runs" / f"fold_{number}"
    if not config.get("ckpt_path"):
        if finished_fold(base, config) is not None:
            return  # finished by an earlier attempt after all
        resume = fold_resume_point(config, base) if reuse is None else None
        config = {**config, "ckpt_path": str(resume)} if resume is not None else config
    span, folds = load_folds(config, span_data(config), wf)
    fold = next((f for f in folds if f.number == number), None)
    if fold is None:
        raise ConfigError(f"{out}: fold {number} is not among the {len(folds)} folds cut from the span now")
    run_fold(config, root, span, fold, Path(reuse) if reuse else None, muted=False)  # its output: its cell.log


def run_folds(config: dict[str, Any], wf: WalkForward, out: Path, span: Any, folds: list[Fold], launcher: Launcher,
              name: str) -> dict[int, Path]:  # fmt: skip
    """Run (or skip, when finished) every fold with ``launcher``: the refit folds, then the folds that reuse their
    models; fold number -> its finished run.

    Raises:
        WalkForwardError: a fold failed (or could not start, its refit fold having failed), naming each one.
        ConfigError: a fold's folder is locked by another live process.
    """
    runs: dict[int, Path] = {}
    failed: dict[int, str] = {}
    refits = [f for f in folds if refit_fold(f.number, wf.refit_every) == f.number]
    reusing = [f for f in folds if refit_fold(f.number, wf.refit_every) != f.number]

    def on_done(spec: CellSpec, result: CellResult) -> Outcome:
        number = int(spec.key.removeprefix("fold_"))
        run = finished_fold(Path(spec.folder)) if result.code == 0 else None
        if run is None:
            log = Path(spec.folder) / "cell.log"
            failed[number] = f"{result.message} (see {log})"
            return Outcome("failed", note=f"{result.message}; see {log}")
        runs[number] = run
        return fold_outcome(config, "done", run)

    with Progress(len(folds), on_done, label="folds") as progress:
        for wave in (refits, reusing):
            specs = []
            for fold in wave:
                base = out / "runs" / f"fold_{fold.number}"
                run = finished_fold(base, config)
                if run is not None:
                    runs[fold.number] = run
                    progress.finish(f"fold_{fold.number}", fold_outcome(config, "skipped", run))
                    continue
                source = refit_fold(fold.number, wf.refit_every)
                if source != fold.number and source not in runs:
                    failed[fold.number] = f"not run, its refit fold {source} failed"
                    progress.finish(f"fold_{fold.number}", Outcome("failed", note=failed[fold.number]))
                    continue
                reuse = str(runs[source]) if source != fold.number else None
                work = partial(fold_cell, wf.record(), str(out), fold.number, reuse)
                specs.append(CellSpec(f"fold_{fold.number}", str(base), config, launcher.settings.retries, work))
            if specs:
                with stopping_cells():  # SIGTERM, Ctrl-C: every running cell checkpoints and stops
                    launcher.run(specs, run_cell_spec, progress)
    if failed:
        first = min(failed)
        raise WalkForwardError(f"walk-forward {name}: fold(s) {', '.join(map(str, sorted(failed)))} of {len(folds)} "
                               f"failed, nothing stitched; fold {first}: {failed[first]}; re-run to retry them "
                               "(finished folds are skipped)")  # fmt: skip
    return runs
