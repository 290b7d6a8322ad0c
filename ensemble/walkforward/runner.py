"""Run a walk-forward: load and check the span once, cut the folds, train each fold as an ordinary run on index
views of that one panel, then stitch the out-of-fold predictions.

Crash safety: a fold is finished once its run's ``metrics.json`` holds its test-block metrics. A re-run skips
finished folds and resumes the fold a stop or kill left unfinished from its last checkpoint (other unfinished
runs are deleted), so a walk-forward stopped in fold 3 goes on in fold 3 where it stopped; seeded folds make the
result equal to an uninterrupted run's. A SIGTERM stop says to re-run the same command. ``walkforward.json``
(``record.py``) holds what trained the folds: a re-run with another config is refused instead of mixing folds of two
setups, and one with another ``trading`` section books the stored predictions again without refitting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ensemble import console
from ensemble.errors import ConfigError, resumed_by
from ensemble.experiments.cells import cell_lock
from ensemble.io import atomic_write
from ensemble.launchers import Launcher, Progress
from ensemble.training.config import get_dotted, model_short_name
from ensemble.training.family import StopRequest
from ensemble.training.trading import trading_section
from ensemble.walkforward.config import WalkForward
from ensemble.walkforward.final import FINAL, adopt_final, oof_temperature, run_final
from ensemble.walkforward.fold import (
    Fold,
    check_data_files,
    check_fold_config,
    check_holdout,
    finished_fold,
    fold_outcome,
    fold_resume_point,
    fold_row,
    load_folds,
    refit_fold,
    run_fold,
    span_data,
)
from ensemble.walkforward.outputs import (
    final_line,
    fold_metrics,
    stitch_oof,
    summarise,
    summary_table,
    write_folds_csv,
    write_results,
)
from ensemble.walkforward.parallel import run_folds
from ensemble.walkforward.plots import write_plots
from ensemble.walkforward.record import RECORD, cell_fingerprint, check_record, make_record, stamp, write_record

__all__ = ["RECORD", "WalkForwardResult", "cell_fingerprint", "run_walkforward", "walkforward_cell"]


@dataclass
class WalkForwardResult:
    """Where a walk-forward landed and what it scored."""

    out: Path
    metrics: dict[str, float]
    folds: pd.DataFrame  # folds.csv
    oof: pd.DataFrame


def default_name(config: dict[str, Any]) -> str:
    """``<model>_h<horizon>``, e.g. ``lightgbm_h5``."""
    return f"{model_short_name(config)}_h{get_dotted(config, 'data.horizon', 5)}"


def output_dir(config: dict[str, Any], wf: WalkForward) -> Path:
    """``wf.out``, else ``walkforward/<name>`` in the working directory, as ``tune/<study>`` and
    ``experiments/<name>`` are."""
    return Path(wf.out) if wf.out else Path("walkforward") / (wf.name or default_name(config))


def run_walkforward(config: dict[str, Any], wf: WalkForward, progress: bool | None = None,
                    launcher: Launcher | None = None, threads: int | None = None,
                    fold_output: bool = False) -> WalkForwardResult:  # fmt: skip
    """Run (or resume) the walk-forward of ``config`` (a resolved run config) with the settings ``wf``.

    Args:
        progress: a bar over the folds besides their lines; default when stderr is a terminal.
        launcher: ``local`` or ``ray``: each fold in its own process, several at once (``parallel.py``); None or
            ``sequential``: the folds one after another in this process, on one load of the span.
        threads: in this process, a tree's library threads (None: the library's default); a launcher's folds
            take theirs from their slot.
        fold_output: print the folds' and the final model's own training output (epochs, tables, warnings), as
            in an experiment cell's process, whose output is its ``cell.log``; else a line per fold.

    Raises:
        ConfigError, DataContractError, WalkForwardError: one line each (bad settings, data, a damaged fold, or
            folds that failed in their own processes).
    """
    if config.get("ckpt_path"):
        raise ConfigError("ckpt_path: a walk-forward trains every fold from scratch (a re-run of the same command "
                          "resumes a stopped one); drop --ckpt_path")  # fmt: skip
    if config.get("test") is False:
        raise ConfigError("test: a walk-forward scores every fold on its test block; drop --test false")
    out = output_dir(config, wf)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"wf.out: {out} is a file, not a folder")
    name = wf.name or default_name(config)
    # every check before the folder, its lock or its record is written: a start that fails on a bad value leaves
    # nothing behind that would refuse the corrected command
    data = span_data(config)
    check_data_files(data)
    record = make_record(config, wf, {s: stamp(data.path(s)) for s in wf.splits})
    check_record(out, record)
    span, folds = load_folds(config, data, wf)
    check_holdout(data, wf.splits)
    check_fold_config(config, span, folds[0])
    with cell_lock(out), resumed_by(_rerun_advice), StopRequest() as stop:
        rejudged = check_record(out, record)  # again, under the lock: another process may have written it since
        write_record(out, record)
        if rejudged:
            console.say(f"walk-forward {name}: {', '.join(rejudged)} changed since its folds ran; trading settings "
                        "train nothing, so finished folds are kept and their stored out-of-fold predictions are "
                        "booked again (no refit)")  # fmt: skip
        if launcher is None or launcher.settings.kind == "sequential":
            with Progress(len(folds), label="folds", bar=progress) as bar:
                runs = _run_folds_here(config, wf, out, span, folds, bar, threads, fold_output, stop)
        else:
            runs = run_folds(config, wf, out, span, folds, launcher, name)
        rows = [fold_row(span, fold, wf.refit_every, runs[fold.number]) for fold in folds]
        write_folds_csv(out, rows)
        oof = stitch_oof(runs, {f.number: len(f.test) for f in folds})
        trading = trading_section(config)
        if trading.bars_per_year is None:  # as the fold runs annualised: inferred from the train timestamps
            trading = replace(trading, bars_per_year=data.bars_per_year)
        per_fold = fold_metrics(runs, oof, data.horizon, trading)
        metrics = summarise(oof, per_fold, data.horizon, trading)
        if wf.span == "trainval":  # the final model, judged on the untouched test split
            stop.check(f"every fold is finished, the final model was not started; {_rerun_advice(None, 'final')}")
            started = time.perf_counter()
            final, status = run_final(config, out, finished_fold(out / "runs" / FINAL), oof_temperature(oof, runs),
                                      muted=not fold_output)
            metrics.update(adopt_final(out, final, data.horizon, trading))
            print(f"walk-forward final model: {status} in {time.perf_counter() - started:.0f}s ({final})", flush=True)
        atomic_write(out / "config.yaml", lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False)))
        write_results(out, oof, metrics, wf.record())
        write_plots(out, per_fold, metrics, oof, data.horizon, [f.test_start for f in folds], name, trading)
    print(f"\nwalk-forward {name}: {len(folds)} folds, {len(oof)} out-of-fold rows -> {out}")
    print(summary_table(per_fold, rows, metrics))
    if "test/log_loss" in metrics:
        print(final_line(metrics))
    else:
        print("no final model: with wf.span all the folds walk over the test split itself")
    return WalkForwardResult(out, metrics, pd.DataFrame(rows), oof)


def _run_folds_here(config: dict[str, Any], wf: WalkForward, out: Path, span: Any, folds: list[Fold],
                    progress: Progress, threads: int | None, fold_output: bool, stop: StopRequest,
                    ) -> dict[int, Path]:  # fmt: skip
    """Run (or skip, when finished) each fold in this process, in order, a ``progress`` line each; fold number ->
    its finished run. A SIGTERM that arrived since (``stop``) ends the loop before the next fold starts."""
    runs: dict[int, Path] = {}
    for fold in folds:
        stop.check(f"{len(runs)} of {len(folds)} folds finished; {_rerun_advice(None, 'next')}")
        refit_from = refit_fold(fold.number, wf.refit_every)
        started = time.perf_counter()
        run = finished_fold(out / "runs" / f"fold_{fold.number}", config)
        state = "skipped"
        if run is None:
            progress.start(f"fold_{fold.number}")
            reuse = None if refit_from == fold.number else runs[refit_from]
            resume = fold_resume_point(config, out / "runs" / f"fold_{fold.number}") if reuse is None else None
            if resume is not None:
                console.say(f"fold_{fold.number}: resuming its interrupted run from {resume}")
            run = run_fold({**config, "ckpt_path": str(resume)} if resume else config, out, span, fold, reuse, threads,
                           muted=not fold_output)  # fmt: skip
            state = "done"
        runs[fold.number] = run
        write_folds_csv(out, [fold_row(span, f, wf.refit_every, runs[f.number]) for f in folds if f.number in runs])
        progress.finish(f"fold_{fold.number}", fold_outcome(config, state, run), time.perf_counter() - started,
                        started=state == "done")  # fmt: skip
    return runs


def walkforward_cell(settings: dict[str, Any], out: str, config: dict[str, Any]) -> None:
    """An experiment cell's work (run in the cell's own process): the walk-forward of ``config`` into ``out``, its
    folds' whole output printed into the cell's log."""
    run_walkforward(config, WalkForward(**{**settings, "out": out}), progress=False, fold_output=True)


def _rerun_advice(saved: str | None, between: str | None = None) -> str:
    """What a SIGTERM stop in a fold (or the final model) says: re-run the same command, which skips the finished
    folds and resumes this one from its last checkpoint (``--ckpt_path`` is refused here). ``between``: the stop
    came between jobs, before the ``next`` fold or the ``final`` model started."""
    if between is not None:
        return f"re-run the same command to go on: it skips the finished folds and starts the {between} " + (
            "fold" if between == "next" else "model")  # fmt: skip
    where = f"saved {saved}; " if saved else "no checkpoint was written yet; "
    then = "resumes the stopped fold from it" if saved else "starts the stopped fold again"
    return f"{where}re-run the same command to go on: it skips the finished folds and {then}"

