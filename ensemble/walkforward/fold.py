"""One walk-forward fold: the span loaded and cut into folds (deterministically, so every process that runs a
fold cuts the same ones), and a fold trained, or evaluated with its refit fold's model, as an ordinary run."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ensemble import console
from ensemble.data.constants import SPLITS
from ensemble.data.contract import DataContractError
from ensemble.data.folds import Fold, cut_folds
from ensemble.data.panel import load_split
from ensemble.data.split_data import SplitData
from ensemble.data.windows import valid_ends
from ensemble.experiments.cells import finished_runs, resume_point
from ensemble.launchers import Outcome, key_metric
from ensemble.training.family import build
from ensemble.training.threads import thread_overrides
from ensemble.walkforward.config import WalkForward


def span_data(config: dict[str, Any]) -> SplitData:
    """The config's ``data`` section as a ``SplitData`` (parsed as the families parse it)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SplitData, "data")
    return parser.instantiate_classes(parser.parse_object({"data": config.get("data") or {}})).data


def check_data_files(data: SplitData) -> None:
    """Every split file a walk-forward reads (train, val, test: the span's, and the final model's holdout) exists,
    before anything is stamped, loaded or written; the demo data is made when ``data.root`` is its folder.

    Raises:
        DataContractError: a missing file or folder, in one line naming it and ``data.root``.
    """
    _ = data.roles  # reads train's schema; the demo's root is filled first (``SplitData._ensure_demo``)
    for split in SPLITS:
        if not data.path(split).is_file():
            raise DataContractError(f"{data.path(split)}: {split} split file not found (data.root='{data.root}')")


def check_holdout(data: SplitData, span_splits: tuple[str, ...]) -> None:
    """Load the splits the folds do not walk over (test, the final model's holdout) as a fit loads them: a NaN,
    inf or out-of-range value there is one line now, not after every fold has trained.

    Raises:
        DataContractError: the value, naming file, column, symbol and row.
    """
    for split in SPLITS:
        if split not in span_splits:
            load_split(data.path(split), data.roles, data.horizon)


def check_fold_config(config: dict[str, Any], span: Any, fold: Fold) -> None:
    """Build (do not run) fold ``fold``'s job as every fold builds its own, without a run folder: a bad model,
    trainer or trading value fails here, in one line, before the walk-forward writes anything.

    Raises:
        ConfigError (or another ``EnsembleError``): what the family's own build raises.
    """
    with console.muted():
        build(config, {"trainer.logger": False}, windows=_fold_windows(span, fold))


def _fold_windows(span: Any, fold: Fold) -> tuple[Any, dict[str, torch.Tensor]]:
    ends = {part: torch.from_numpy(getattr(fold, part)) for part in ("train", "val", "test")}
    return replace(span), ends  # a fresh panel object per fold (its tensors shared): a fold may swap a field


def finished_fold(base: Path, config: Mapping[str, Any] | None = None) -> Path | None:
    """The fold's finished run. Deletes the unfinished runs a stop or kill left mid-fold, except (given the fold's
    ``config``) the newest one when it holds a last checkpoint: ``fold_resume_point`` resumes that one. The
    walk-forward's record (``walkforward.json``) guarantees it was started with the same config."""
    done = [run for run, _ in finished_runs(base)]
    resume = fold_resume_point(config, base) if config is not None and not done else None
    for run in base.glob("version_*"):
        if run.is_dir() and run not in done and (resume is None or run != resume.parent.parent):
            shutil.rmtree(run)
    return done[-1] if done else None


def fold_outcome(config: dict[str, Any], state: str, run: Path) -> Outcome:
    """What a finished fold's progress line says: ``state`` (done, skipped) and its key metric on its test block,
    the fold's out-of-fold rows (the checkpoint monitor's metric, e.g. ``oof/log_loss``), with its run folder."""
    return Outcome(state, *key_metric(config, run / "metrics.json", "test", "oof"), str(run))


def fold_resume_point(config: Mapping[str, Any], base: Path) -> Path | None:
    """The last checkpoint of the fold's unfinished newest run (a stopped or killed fold), else None."""
    return resume_point(config, base)


def load_folds(config: dict[str, Any], data: SplitData, wf: WalkForward) -> tuple[Any, list[Fold]]:
    """The span panel of ``data`` (``wf.splits`` joined) and its folds, cut deterministically: the walk-forward's
    process and each fold's own process (``--launcher local|ray``) cut the same folds here."""
    span = data.load_span(wf.splits)
    eligible, clock = torch.zeros(len(span), dtype=torch.bool), torch.zeros(len(span), dtype=torch.bool)
    eligible[valid_ends(span, data.seq_len)] = True
    clock[valid_ends(span, 1)] = True  # blocks cut on the labelled rows: every seq_len gets the same folds
    return span, cut_folds(span, eligible.numpy(), data.horizon, wf.spec(), clock.numpy())


def refit_fold(number: int, refit_every: int) -> int:
    """The fold whose model fold ``number`` uses: itself on a refit fold, else the last refit fold before it."""
    return number - (number - 1) % refit_every


def fold_row(span: Any, fold: Fold, refit_every: int, run: Path) -> dict[str, Any]:
    """The fold's ``folds.csv`` row."""
    return {**fold.describe(span.time.numpy(), span.tz), "refit_from": refit_fold(fold.number, refit_every),
            "run_dir": str(run)}  # fmt: skip


def run_fold(config: dict[str, Any], out: Path, span: Any, fold: Fold, reuse: Path | None,
             threads: int | None = None, muted: bool = True) -> Path:  # fmt: skip
    """Train (or, with ``reuse``, evaluate that fold's model on) one fold; its finished run folder. ``threads``:
    a tree's library threads (torch's are the process's own); a ``ckpt_path`` in ``config`` resumes the fold's
    run from it (a retried fold process). ``muted``: print nothing but errors (the walk-forward prints a line per
    fold); unmuted in a process whose output is a ``cell.log``, which keeps the fold's whole output."""
    overrides = {"tracking.save_dir": str(out / "runs"), "tracking.name": f"fold_{fold.number}"}
    if threads is not None:
        overrides |= thread_overrides(config, threads)
    with console.muted() if muted else contextlib.nullcontext():  # a line per fold, not its epochs and tables
        job = build(config, overrides, windows=_fold_windows(span, fold))
        if reuse is None:
            job.fit()
        else:
            ckpt = json.loads((reuse / "metrics.json").read_text())["checkpoint/test"]
            job.finish({}, ckpt=str(reuse / ckpt))
    return job.run_dir
