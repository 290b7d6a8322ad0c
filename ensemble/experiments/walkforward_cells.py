"""Experiment cells that are walk-forwards: each (model, horizon) runs ``ensemble walkforward`` in its own process
into ``<out>/walkforward/<model>_h<horizon>/<fingerprint>``, skipped on a re-run once its metrics exist; then the
experiment's blends of each horizon's finished cells, fitted on their out-of-fold predictions, into
``<out>/blends/ensemble_<method>_h<horizon>/version_N``."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from ensemble import console
from ensemble.ensembling.blend import finished_blend
from ensemble.errors import ConfigError
from ensemble.experiments.cells import run_cells
from ensemble.launchers import CellResult, CellSpec, Launcher, Outcome, key_metric
from ensemble.walkforward.config import WalkForward
from ensemble.walkforward.runner import cell_fingerprint, walkforward_cell

LEADERBOARD_METRICS = ("f1_macro", "log_loss", "sharpe", "sharpe_net", "max_drawdown")
# the test split's, of a cell's final model or a blend's final fit: reported beside, never used to choose
TEST_METRICS = ("sharpe", "sharpe_net")


def walkforward_row(model: str, horizon: int, out: Path | None, status: str, error: str = "",
                    kind: str = "walkforward") -> dict[str, Any]:  # fmt: skip
    """One leaderboard row: the stitched out-of-fold metrics with each one's per-fold std beside it (a blend's
    out-of-fold rows are its forward-only folds 2..F; ``fit_on`` says what its weights were fitted on)."""
    metrics = json.loads((out / "metrics.json").read_text()) if out is not None and status == "done" else {}
    values: dict[str, Any] = {"model": model, "horizon": horizon, "kind": kind, "status": status,
                              "folds": metrics.get("folds"), "fit_on": metrics.get("fit_on", "")}  # fmt: skip
    for name in LEADERBOARD_METRICS:
        values[f"oof_{name}"] = metrics.get(f"oof/{name}")
        values[f"{name}_fold_std"] = metrics.get(f"folds/{name}/std")
    for name in TEST_METRICS:
        values[f"test_{name}"] = metrics.get(f"test/{name}")
    return {**values, "run_dir": str(out or ""), "error": error}


def _done(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and "oof/f1_macro" in json.loads((folder / "metrics.json").read_text())


def run_walkforward_cells(settings: dict[str, Any], cells: list[tuple[str, int, dict[str, Any]]], out: Path,
                          on_change: str, launcher: Launcher) -> list[dict[str, Any]]:  # fmt: skip
    """Run (or skip, when finished with the same config) each cell's walk-forward with ``launcher``, as member
    cells run (one by one, several at once, or on Ray); leaderboard rows in grid order.

    Raises:
        ConfigError: a bad ``walkforward`` key or value (before any cell runs), or, with ``on_change: refuse``,
            a cell finished earlier with another config.
    """
    if any(key in settings for key in ("out", "name")):
        raise ConfigError("walkforward.out / walkforward.name: an experiment places each cell's walk-forward itself")
    wf = WalkForward.from_mapping(dict(settings))
    plan = []
    for model, horizon, config in cells:
        cell = f"{model}_h{horizon}"
        base = out / "walkforward" / cell
        folder = base / cell_fingerprint(config, wf)
        stale = [p for p in base.glob("*") if p != folder and _done(p)] if base.is_dir() else []
        if stale and not _done(folder) and on_change == "refuse":
            raise ConfigError(f"{cell}: its finished walk-forward {stale[0]} was run with another config; "
                              "set on_change: rerun to run the changed cell(s) again")  # fmt: skip
        plan.append((model, horizon, config, cell, folder))
    rows: dict[str, dict[str, Any]] = {}
    todo: list[CellSpec] = []
    skipped: list[tuple[str, Outcome]] = []
    grid = {cell: (model, horizon, folder) for model, horizon, _, cell, folder in plan}
    for model, horizon, config, cell, folder in plan:
        if _done(folder):
            metric = key_metric(config, folder / "metrics.json", "oof")
            skipped.append((cell, Outcome("skipped", *metric, str(folder))))
            rows[cell] = walkforward_row(model, horizon, folder, "done")
            continue
        work = partial(walkforward_cell, dict(settings), str(folder))  # a re-run skips the finished folds
        todo.append(CellSpec(cell, str(out / "runs" / cell), config, launcher.settings.retries, work))

    def on_done(spec: CellSpec, result: CellResult) -> Outcome:
        """Record a finished cell's leaderboard row; what its progress line says (its out-of-fold key metric)."""
        model, horizon, folder = grid[spec.key]
        if result.code != 0 or not _done(folder):  # reported and recorded; the other cells go on
            rows[spec.key] = walkforward_row(model, horizon, None, "failed", result.message)
            return Outcome("failed", note=f"{result.message}; see {Path(spec.folder) / 'cell.log'}")
        rows[spec.key] = walkforward_row(model, horizon, folder, "done")
        return Outcome("done", *key_metric(spec.config, folder / "metrics.json", "oof"), str(folder))

    run_cells(launcher, todo, skipped, len(plan), on_done)
    return [rows[cell] for _, _, _, cell, _ in plan]


def walkforward_blends(methods: list[str], options: dict[str, dict[str, Any]] | None, rows: list[dict[str, Any]],
                       out: Path) -> list[dict[str, Any]]:  # fmt: skip
    """Fit each of ``methods`` on every horizon's finished walk-forward cells (two or more), on their out-of-fold
    predictions (``ensemble.ensembling.oof``); a leaderboard row (kind ``blend``, ``fit_on: oof``) for each.

    Raises:
        BlendError, ConfigError: cells that cannot be blended (other folds), a bad method or option.
    """
    from ensemble.ensembling.oof import oof_blend

    blends = []
    for horizon in dict.fromkeys(r["horizon"] for r in rows):
        done = [Path(r["run_dir"]) for r in rows if r["horizon"] == horizon and r["status"] == "done"]
        for method in methods if len(done) >= 2 else []:
            name = f"ensemble_{method}_h{horizon}"
            run = finished_blend(out / "blends" / name, method, done, horizon, options, "oof")
            if run is not None:
                console.say(f"blend {name}: skipped (finished earlier) ({run})")
                blends.append(walkforward_row(f"ensemble_{method}", horizon, run, "done", kind="blend"))
                continue
            run = oof_blend(done, method, out / "blends", name=name, options=options, root=out)
            console.say(f"blend {name}: fitted on out-of-fold rows ({run})")
            blends.append(walkforward_row(f"ensemble_{method}", horizon, run, "done", kind="blend"))
    return blends
