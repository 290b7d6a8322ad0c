"""Run a grid of models x horizons; each cell is an ordinary ``ensemble fit`` in its own process
(isolated memory and failures), skipped on a re-run once it has finished."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ensemble.ensembling.blend import blend
from ensemble.errors import ConfigError
from ensemble.experiments.cells import fingerprint, finished_runs, record_cell, run_cell
from ensemble.experiments.leaderboard import row, write_leaderboard, write_walkforward_leaderboard
from ensemble.experiments.walkforward_cells import run_walkforward_cells
from ensemble.models.registry import get_model, list_models
from ensemble.training.config import config_from_flags, resolve_config
from ensemble.training.tracking import Tracking, finish_run, parent_run


@dataclass
class Experiment:
    """An experiment: ``models`` (registry names) x ``horizons``.

    The default grid is every registered model, except those that need pretrained weights (TimesFM)
    and have no ``model_args`` entry to say where the weights are.

    Args:
        fit_args: extra ``ensemble fit`` flags for every cell, e.g. ["--trainer.max_epochs", "3"].
        model_args: extra flags per model name (the same form).
        blends: blend methods fitted on each horizon's finished members (mean, weighted, stacked).
        configs_dir: where the models' configs live (``<configs_dir>/<name>.yaml``).
        on_change: a cell whose finished run was trained with another config (edited ``fit_args``, another
            config file): ``rerun`` trains it again as a new version, ``refuse`` stops before any cell runs.
        walkforward: ``ensemble walkforward``'s ``wf`` settings (``{folds: 6, embargo: 5, ...}``); each cell is
            then a walk-forward and the leaderboard ranks on out-of-fold metrics, with per-fold std beside them.
    """

    name: str = "baseline"
    models: list[str] | None = None
    horizons: list[int] = field(default_factory=lambda: [5, 20])
    data_root: str = "data/demo"
    configs_dir: str = "configs"
    fit_args: list[str] = field(default_factory=list)
    model_args: dict[str, list[str]] = field(default_factory=dict)
    blends: list[str] = field(default_factory=lambda: ["mean", "weighted", "stacked"])
    out: str | None = None
    mlflow: bool = False
    mlflow_uri: str = "sqlite:///mlflow.db"
    mlflow_experiment: str = "ensemble"
    on_change: Literal["rerun", "refuse"] = "rerun"
    walkforward: dict[str, Any] | None = None


def cell_config(exp: Experiment, model: str, horizon: int, runs: Path, parent: str | None) -> dict[str, Any]:
    """The run config of one cell: the model's bundled config, the experiment's data and horizon, then the
    experiment's ``fit_args`` and the model's ``model_args`` (dotted keys; later wins)."""
    config = resolve_config(Path(exp.configs_dir) / Path(get_model(model).config).name, {
        "data.root": exp.data_root, "data.horizon": horizon, "tracking.save_dir": str(runs),
        "tracking.name": f"{model}_h{horizon}", "trainer.enable_progress_bar": False})  # fmt: skip
    config = config_from_flags(exp.fit_args, base=config)
    config = config_from_flags(exp.model_args.get(model, []), base=config)
    if parent:
        config = resolve_config(config, {"tracking.mlflow": True, "tracking.mlflow_uri": exp.mlflow_uri,
                                         "tracking.experiment": exp.mlflow_experiment,
                                         "tracking.parent_run_id": parent})  # fmt: skip
    return config


def default_models(exp: Experiment) -> list[str]:
    models = []
    for entry in list_models():
        if entry.needs_weights and entry.name not in exp.model_args:
            print(f"{entry.name}: not in the default grid, it needs pretrained weights; list it in models and "
                  f"give its checkpoint in model_args", flush=True)
            continue
        models.append(entry.name)
    return models


def run_experiment(exp: Experiment) -> list[dict]:
    models = exp.models or default_models(exp)
    for m in models:
        get_model(m)  # unknown names fail before any cell runs
    out = Path(exp.out or Path("experiments") / exp.name)
    runs = out / "runs"
    tracking = Tracking(mlflow_uri=exp.mlflow_uri, experiment=exp.mlflow_experiment)
    parent = parent_run(tracking, f"experiment:{exp.name}") if exp.mlflow else None
    cells = [(m, h, cell_config(exp, m, h, runs, parent)) for h in exp.horizons for m in models]
    if exp.walkforward is not None:
        if exp.blends:  # blends of out-of-fold predictions belong to the ensembles work, not here
            print(f"blends {exp.blends}: not fitted on walk-forward cells; the leaderboard ranks the cells only")
        rows = run_walkforward_cells(exp.walkforward, cells, out, exp.on_change)
        board = write_walkforward_leaderboard(rows, out)
        if parent:
            finish_run(tracking, parent)
        print(f"leaderboard: {out / 'leaderboard.md'}")
        return board.to_dict("records")
    stale = [(f"{m}_h{h}", done[-1][0]) for m, h, c in cells
             if (done := finished_runs(runs / f"{m}_h{h}")) and fingerprint(c) not in {f for _, f in done}]
    if stale and exp.on_change == "refuse":  # before any cell trains
        raise ConfigError(f"{stale[0][0]}: its finished run {stale[0][1]} was trained with another config; "
                          f"set on_change: rerun to train the {len(stale)} changed cell(s) again")  # fmt: skip
    rows = []
    for i, (model, horizon, config) in enumerate(cells, 1):
        cell = f"{model}_h{horizon}"
        before = finished_runs(runs / cell)
        match = [run for run, fp in before if fp == fingerprint(config)]
        if match:
            print(f"[{i}/{len(cells)}] {cell}: finished earlier, skipped ({match[-1]})", flush=True)
            rows.append(row(model, horizon, "member", match[-1], "done"))
            continue
        if before:
            print(f"[{i}/{len(cells)}] {cell}: config changed since {before[-1][0]}, training it again", flush=True)
        start = time.perf_counter()
        code, error = run_cell(config, runs / cell)
        new = [run for run, _ in finished_runs(runs / cell) if run not in {r for r, _ in before}]
        done = new[-1] if new else None
        if done is not None:
            record_cell(done, config)
        if code != 0 or done is None:  # reported and recorded; the other cells go on
            print(f"[{i}/{len(cells)}] {cell}: FAILED ({error})", flush=True)
            rows.append(row(model, horizon, "member", None, "failed", error))
            continue
        print(f"[{i}/{len(cells)}] {cell}: done in {time.perf_counter() - start:.0f}s ({done})", flush=True)
        rows.append(row(model, horizon, "member", done, "done"))
    for horizon in exp.horizons:
        members = [Path(r["run_dir"]) for r in rows if r["horizon"] == horizon and r["status"] == "done"]
        for method in exp.blends if len(members) >= 2 else []:
            run_dir = blend(members, method, runs, name=f"ensemble_{method}_h{horizon}")
            rows.append(row(f"ensemble_{method}", horizon, "blend", run_dir, "done"))
    board = write_leaderboard(rows, out)
    if parent:
        finish_run(tracking, parent)
    print(f"leaderboard: {out / 'leaderboard.md'}")
    return board.to_dict("records")
