"""Temperature scaling of a run, after its fit has chosen the checkpoint (Guo et al. 2017, section 4.2).

One T per model, fitted on the run's val predictions (a walk-forward fold's inner-val slice: folds are ordinary
runs), or given to the run (``Job.given_temperature``: a walk-forward's final model gets the T fitted on its
folds' stitched out-of-fold predictions, ``ensemble.walkforward.final.oof_temperature``). It is stored in the
checkpoint it was fitted for (a net's ``.ckpt`` entry ``calibration``, a tree's sidecar) and applied wherever that
checkpoint is evaluated or predicts: ``validate``/``test``/``predict --ckpt_path``, the after-fit evaluation,
exports and ``predict --from``. Dividing logits by T > 0 never changes the arg-max, so predictions and macro-F1
are those of the uncalibrated model, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ensemble import console
from ensemble.metrics.calibration import fit_temperature
from ensemble.training.artifacts import PROB_COLUMNS, update_metrics_json

if TYPE_CHECKING:
    from ensemble.training.family import Job

CALIBRATE_HELP = ("fit: fit one temperature T on the val predictions of the chosen checkpoint, store it in the "
                  "checkpoint and apply it to every split's probabilities and metrics (false: T = 1, uncalibrated)")


@dataclass(frozen=True)
class Temperature:
    """A fitted temperature and what it was fitted on: ``fitted_on`` (``val``, ``oof``) and its row count."""

    value: float
    fitted_on: str
    rows: int


def val_temperature(run_dir: Path) -> Temperature:
    """T fitted (``fit_temperature``) on ``run_dir/predictions/val.parquet``: its class probabilities and labels.

    Raises:
        CalibrationInputError: the file holds no labelled rows or non-finite probabilities.
    """
    df = pd.read_parquet(Path(run_dir) / "predictions" / "val.parquet", columns=[*PROB_COLUMNS, "label"])
    value = fit_temperature(df[list(PROB_COLUMNS)].to_numpy(np.float64), df["label"].to_numpy(np.int64) + 1)
    return Temperature(value, "val", len(df))


def calibrate_checkpoint(job: Job, ckpt: str, uncalibrated: dict[str, float]) -> dict[str, float]:
    """Fit T on the val predictions ``job`` has just written for ``ckpt`` (evaluated at T = 1), or take
    ``job.given_temperature`` when set, store it in ``ckpt`` and evaluate val again with it. Records
    ``calibration/temperature``, ``calibration/fitted_on`` (``val``, ``oof``), ``calibration/fit_rows`` and the
    val log loss before and after in metrics.json.

    Under DDP every rank calls it: each reads the same val file (after a barrier) and fits the same T; rank 0
    writes the checkpoint, and every rank loads it after a second barrier.

    Returns:
        the calibrated ``val/*`` metrics.
    """
    job.barrier()  # rank 0 has written the val predictions
    run_dir = job.run_dir  # a collective under DDP: every rank asks
    fitted = job.given_temperature or val_temperature(run_dir)
    temperature = fitted.value
    if job.is_global_zero():
        job.store_temperature(ckpt, temperature)
    job.barrier()
    calibrated = job.evaluate("val", ckpt)
    if job.is_global_zero():
        before, after = uncalibrated.get("val/log_loss"), calibrated.get("val/log_loss")
        update_metrics_json(run_dir, {"calibration/temperature": temperature,
                                      "calibration/fitted_on": fitted.fitted_on, "calibration/fit_rows": fitted.rows,
                                      "calibration/val_log_loss_before": before,
                                      "calibration/val_log_loss_after": after})  # fmt: skip
        console.say(f"calibration: T = {temperature:.4f} fitted on {fitted.fitted_on} ({fitted.rows} rows); "
                    f"val log loss {before:.5f} -> {after:.5f}")
    return calibrated


def note_temperature(carried: bool, temperature: float, source: str | Path) -> float:
    """``temperature``, saying in one line when ``source`` (a checkpoint or export) carries none, so a model from
    before calibration (or ``fit --calibrate false``) is never silently uncalibrated."""
    if not carried:
        console.say(f"note: {source} carries no calibration temperature (written before calibration, or with "
                    "--calibrate false); its probabilities are used as they are (T = 1)")  # fmt: skip
    return temperature
