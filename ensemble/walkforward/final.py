"""A walk-forward's final model (span trainval): trained as ``ensemble fit`` trains it, on the config's own splits
(train fits, val early-stops, test is predicted once; labels whose window reaches the next split nulled, as
``--data.purge_labels true`` does), into ``<wf out>/runs/final/version_N``. Its test
predictions are the walk-forward's ``predictions/test.parquet`` and its ``test/*`` metrics sit in the
walk-forward's metrics.json beside ``oof/*``, so a walk-forward folder is a candidate judged on the untouched
test split (and an out-of-fold blend of such folders can be too). With span all the folds walk over test itself:
there is no final model.

Its calibration temperature is fitted on the folds' stitched out-of-fold predictions (``oof_temperature``), not on
its own val split: val also early-stopped it and chose its checkpoint, the out-of-fold rows did neither, and there
are many more of them. It is stored where a run's own T lives (checkpoint or sidecar), so the final run's
evaluation, its export and ``predict --from`` apply it; metrics.json says ``calibration/fitted_on: oof``."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble import console
from ensemble.io import atomic_write
from ensemble.metrics.calibration import apply_temperature, fit_temperature
from ensemble.metrics.config import TradingConfig
from ensemble.training.artifacts import PROB_COLUMNS
from ensemble.training.calibration import Temperature
from ensemble.training.family import build
from ensemble.walkforward.outputs import rebook

FINAL = "final"


def oof_temperature(oof: pd.DataFrame, runs: dict[int, Path]) -> Temperature:
    """T fitted (``fit_temperature``) on the stitched out-of-fold rows' *uncalibrated* probabilities.

    Each fold's test block was scaled by the temperature of the model that predicted it (its run's metrics.json
    ``calibration/temperature``; 1.0 when absent: uncalibrated): ``p = softmax(log q / T_f)``. That is undone
    exactly, ``q = softmax(T_f log p)`` (``apply_temperature(p, 1 / T_f)``), before the one T is fitted.

    Args:
        oof: the stitched out-of-fold predictions (``PROB_COLUMNS``, ``label`` in -1/0/1, ``fold``).
        runs: fold number -> its finished run folder.

    Raises:
        CalibrationInputError: non-finite probabilities, or no rows.
    """
    probs = oof[list(PROB_COLUMNS)].to_numpy(np.float64, copy=True)  # written below, per fold
    fold = oof["fold"].to_numpy()
    for number, run in runs.items():
        recorded = json.loads((run / "metrics.json").read_text()).get("calibration/temperature", 1.0)
        rows = fold == number
        if recorded != 1.0 and rows.any():
            probs[rows] = apply_temperature(probs[rows], 1.0 / recorded)
    return Temperature(fit_temperature(probs, oof["label"].to_numpy(np.int64) + 1), "oof", len(oof))


def run_final(config: dict[str, Any], out: Path, finished: Path | None, temperature: Temperature | None = None,
              muted: bool = True) -> tuple[Path, str]:  # fmt: skip
    """The final model's finished run (``finished``, from an earlier run of the walk-forward, or trained now) and
    what happened (a progress line's detail). ``temperature`` (``oof_temperature``) is the one its calibration
    stores (unless the config says ``calibrate: false``); None: fitted on its val split, as ``fit`` does.
    ``muted``: print nothing of its training but errors (unmuted in a cell process, whose output is its
    ``cell.log``)."""
    if finished is not None:
        return finished, "finished earlier, skipped"
    # the span's upstream split boundaries may be unpurged (the folds purge their own): null the labels whose
    # window reaches the next split, as fit --data.purge_labels does; a split purged upstream is left as it is
    overrides = {"tracking.save_dir": str(out / "runs"), "tracking.name": FINAL, "data.purge_labels": True}
    with console.muted() if muted else contextlib.nullcontext():  # one line, as a fold has
        job = build(config, overrides)
        job.given_temperature = temperature
        job.fit()
    return job.run_dir, "done"


def adopt_final(out: Path, run: Path, horizon: int, trading: TradingConfig) -> dict[str, Any]:
    """Copy the final run's ``predictions/test.parquet`` to ``<out>/predictions/test.parquet``; its ``test/*``
    metrics and ``trading/test``, for the walk-forward's metrics.json, its trading metrics booked again with
    ``trading`` when the run booked them with another section (``outputs.rebook``)."""
    source = run / "predictions" / "test.parquet"
    atomic_write(out / "predictions" / "test.parquet", lambda p: shutil.copyfile(source, p))
    recorded = rebook(json.loads((run / "metrics.json").read_text()), "test", pd.read_parquet(source), horizon,
                      trading)  # fmt: skip
    return {k: v for k, v in recorded.items() if k.startswith("test/") or k == "trading/test"}
