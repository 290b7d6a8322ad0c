"""A walk-forward's final model (span trainval): trained as ``ensemble fit`` trains it, on the config's own splits
(train fits, val early-stops, test is predicted once; labels whose window reaches the next split nulled, as
``--data.purge_labels true`` does), into ``<wf out>/runs/final/version_N``. Its test
predictions are the walk-forward's ``predictions/test.parquet`` and its ``test/*`` metrics sit in the
walk-forward's metrics.json beside ``oof/*``, so a walk-forward folder is a candidate judged on the untouched
test split (and an out-of-fold blend of such folders can be too). With span all the folds walk over test itself:
there is no final model."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from ensemble import console
from ensemble.io import atomic_write
from ensemble.training.family import build

FINAL = "final"


def run_final(config: dict[str, Any], out: Path, finished: Path | None, muted: bool = True) -> tuple[Path, str]:
    """The final model's finished run (``finished``, from an earlier run of the walk-forward, or trained now) and
    what happened (a progress line's detail). ``muted``: print nothing of its training but errors (unmuted in a
    cell process, whose output is its ``cell.log``)."""
    if finished is not None:
        return finished, "finished earlier, skipped"
    # the span's upstream split boundaries may be unpurged (the folds purge their own): null the labels whose
    # window reaches the next split, as fit --data.purge_labels does; a split purged upstream is left as it is
    overrides = {"tracking.save_dir": str(out / "runs"), "tracking.name": FINAL, "data.purge_labels": True}
    with console.muted() if muted else contextlib.nullcontext():  # one line, as a fold has
        job = build(config, overrides)
        job.fit()
    return job.run_dir, "done"


def adopt_final(out: Path, run: Path) -> dict[str, Any]:
    """Copy the final run's ``predictions/test.parquet`` to ``<out>/predictions/test.parquet``; its ``test/*``
    metrics, for the walk-forward's metrics.json."""
    source = run / "predictions" / "test.parquet"
    atomic_write(out / "predictions" / "test.parquet", lambda p: shutil.copyfile(source, p))
    recorded = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in recorded.items() if k.startswith("test/")}
