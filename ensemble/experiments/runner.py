"""Run a grid of models x horizons; each cell is an ordinary ``ensemble fit`` in its own process
(isolated memory and failures), skipped on a re-run once it has finished. The cells go to a launcher
(``ensemble.launchers``): one after another, several at once on this machine, or as Ray tasks; the
skipping, records, leaderboard and blends are the same whichever runs them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ensemble import console
from ensemble.ensembling.blend import VAL_NOTE, blend, finished_blend, make_method
from ensemble.errors import ConfigError, unknown_key
from ensemble.experiments.cells import (
    CELL_RECORD,
    check_writable,
    fingerprint,
    finished_runs,
    interrupted_run,
    record_cell,
    run_cells,
)
from ensemble.experiments.champion import check_champion_metric, check_partitions, choose_champions
from ensemble.experiments.leaderboard import (
    WALKFORWARD_TERMINAL,
    row,
    terminal_table,
    write_leaderboard,
    write_walkforward_leaderboard,
)
from ensemble.experiments.selection_bias import config_files, trials_tried
from ensemble.experiments.walkforward_cells import run_walkforward_cells, walkforward_blends
from ensemble.launchers import CellResult, CellSpec, LauncherSettings, Outcome, key_metric, make_launcher
from ensemble.models.registry import get_model, list_models
from ensemble.training.config import config_from_flags, merge, resolve_config
from ensemble.training.tracking import Tracking, finish_run, parent_run
from ensemble.training.trading import check_against_data, trading_section


@dataclass
class Experiment:
    """An experiment: ``models`` (registry names) x ``horizons``.

    The default grid is every registered model, except those that need pretrained weights (TimesFM)
    and have no ``model_args`` entry to say where the weights are.

    Args:
        name: the experiment's name; its folder is ``experiments/<name>`` unless ``out`` says otherwise.
        models: registry names (``ensemble models``); default the grid described above.
        horizons: label horizons H, one cell per model and horizon (reads ``label_h{H}``).
        data_root: the folder of the train/val/test splits every cell trains on.
        fit_args: extra ``ensemble fit`` flags for every cell, e.g. ["--trainer.max_epochs", "3"].
        model_args: extra flags per model name (the same form).
        blends: blend methods fitted on each horizon's finished members (``ensemble blend --method``): on their
            out-of-fold predictions for walk-forward cells, else on val.
        blend_options: per-method options, e.g. ``{caruana: {size: 50, init: 1, bags: 5}}``.
        configs_dir: where the models' configs live (``<configs_dir>/<name>.yaml``).
        out: the experiment's folder (runs, cell logs, leaderboard); default ``experiments/<name>``.
        mlflow: log every cell to MLflow as a child run of one experiment run.
        mlflow_uri: the MLflow tracking store (``sqlite:///mlflow.db``, or a server URL).
        mlflow_experiment: the MLflow experiment name.
        trading: a ``trading:`` section (costs, sizing, book, benchmark, bars_per_year) laid over every cell's
            config and used by its blends; ``fit_args`` still win over it.
        on_change: a cell whose finished run was trained with another config (edited ``fit_args``, another
            config file): ``rerun`` trains it again as a new version, ``refuse`` stops before any cell runs.
        launcher: how cells run: ``sequential``, ``local`` (``workers`` at once) or ``ray`` (docs/scaling.md).
        threads: torch, OpenMP and tree-library threads of each cell's process (default: the cores this
            process may use, divided among the workers).
        walkforward: ``ensemble walkforward``'s ``wf`` settings (``{folds: 6, embargo: 5, ...}``); each cell is
            then a walk-forward and the leaderboard ranks on out-of-fold metrics, with per-fold std beside them.
        champion_metric: walk-forward experiments: the out-of-fold metric that chooses each horizon's champion
            among members and blends, on the rows all of them share (``oof/log_loss``, lower is better; any
            ``oof/<metric>`` of the suite, its direction known).
        pbo_partitions: walk-forward experiments: S, the blocks of the CSCV behind the ``pbo`` column (even;
            fewer when the shared series are too short for blocks of h timestamps, as the board says).
    """

    name: str = "baseline"
    models: list[str] | None = None
    horizons: list[int] = field(default_factory=lambda: [5, 20])
    data_root: str = "data/demo"
    configs_dir: str = "configs"
    fit_args: list[str] = field(default_factory=list)
    model_args: dict[str, list[str]] = field(default_factory=dict)
    blends: list[str] = field(default_factory=lambda: ["mean", "weighted", "stacked", "caruana", "best"])
    blend_options: dict[str, dict[str, Any]] | None = None
    out: str | None = None
    mlflow: bool = False
    mlflow_uri: str = "sqlite:///mlflow.db"
    mlflow_experiment: str = "ensemble"
    on_change: Literal["rerun", "refuse"] = "rerun"
    trading: dict[str, Any] | None = None
    launcher: LauncherSettings = field(default_factory=LauncherSettings)
    threads: int | None = None
    walkforward: dict[str, Any] | None = None
    champion_metric: str = "oof/log_loss"
    pbo_partitions: int = 16

    def __post_init__(self) -> None:
        check_champion_metric(self.champion_metric)  # before any cell runs
        check_partitions(self.pbo_partitions)
        for key in ("models", "horizons", "blends"):  # a repeat would be one more candidate, and one more trial
            values = list(getattr(self, key) or [])
            twice = sorted({str(v) for v in values if values.count(v) > 1})
            if twice:
                raise ConfigError(f"{key}: {', '.join(twice)} listed more than once")
        if isinstance(self.launcher, dict):  # as parsed from flags or YAML
            self.launcher = LauncherSettings(**self.launcher)


def check_experiment_keys(values: Any, where: str) -> None:
    """Raise ConfigError unless every top-level key of an experiment YAML ``values`` is an ``Experiment`` field and
    every ``launcher:`` key a ``LauncherSettings`` field: one line naming the file ``where`` and the key, with the
    closest known key (``errors.unknown_key``). The sections with keys of their own (``walkforward``, ``trading``,
    ``blend_options``) check theirs alike when they are read.

    Raises:
        ConfigError: an unknown key, or a YAML that is not a mapping.
    """
    if values is None:
        return
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: an experiment YAML is a mapping of keys (name, models, horizons, ...), got "
                          f"{type(values).__name__}")  # fmt: skip
    known = [f.name for f in fields(Experiment)]
    for key in values:
        if key not in known:
            raise ConfigError(f"{where}: {unknown_key(str(key), known, 'experiment key')}")
    launcher = values.get("launcher")
    if isinstance(launcher, dict):
        known = [f.name for f in fields(LauncherSettings)]
        for key in launcher:
            if key not in known:
                raise ConfigError(f"{where}: {unknown_key(f'launcher.{key}', known, 'launcher key')}")


def cell_config(exp: Experiment, model: str, horizon: int, runs: Path, parent: str | None) -> dict[str, Any]:
    """The run config of one cell: the model's bundled config, the experiment's data and horizon, then the
    experiment's ``fit_args`` and the model's ``model_args`` (dotted keys; later wins)."""
    config = resolve_config(Path(exp.configs_dir) / Path(get_model(model).config).name, {
        "data.root": exp.data_root, "data.horizon": horizon, "tracking.save_dir": str(runs),
        "tracking.name": f"{model}_h{horizon}", "trainer.enable_progress_bar": False})  # fmt: skip
    if exp.trading:
        config = merge(config, {"trading": exp.trading})
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
            console.say(f"{entry.name}: not in the default grid, it needs pretrained weights; list it in models "
                        "and give its checkpoint in model_args")
            continue
        models.append(entry.name)
    return models


def run_experiment(exp: Experiment) -> list[dict]:
    """Run the experiment's cells (those not finished earlier) with its launcher, then its blends and
    leaderboard; the leaderboard's rows, members in grid order then blends.

    Raises:
        ConfigError: an unknown model, a bad launcher setting, an output folder that cannot be written, or
            (``on_change: refuse``) a changed cell; all before any cell runs.
    """
    models = exp.models or default_models(exp)
    if exp.trading:
        trading_section({"trading": exp.trading})  # bad keys fail before any cell
    for m in models:
        get_model(m)  # unknown names fail before any cell runs
    launcher = make_launcher(exp.launcher, exp.threads)  # a bad setting, too
    out = Path(exp.out or Path("experiments") / exp.name)
    runs = out / "runs"
    if (why := check_writable(out, leave_nothing=True)) is not None:  # a refusal below leaves no empty folder
        raise ConfigError(why)
    tracking = Tracking(mlflow_uri=exp.mlflow_uri, experiment=exp.mlflow_experiment)
    parent = parent_run(tracking, f"experiment:{exp.name}") if exp.mlflow else None
    cells = [(m, h, cell_config(exp, m, h, runs, parent)) for h in exp.horizons for m in models]
    checked = set()
    for _, _, config in cells:  # an impossible k or bars_per_year fails before any cell, once per data/trading pair
        if (key := json.dumps([config.get("data"), config.get("trading")], sort_keys=True, default=str)) not in checked:
            checked.add(key)
            check_against_data(config)
    for method in exp.blends or ["mean"]:  # every blend_options key is checked, even with no blend listed
        make_method(method, exp.blend_options)  # an unknown method or option fails before any cell runs
    if exp.walkforward is not None:
        rows = run_walkforward_cells(exp.walkforward, cells, out, exp.on_change, launcher)
        rows += walkforward_blends(exp.blends, exp.blend_options, rows, out)
        # the champion, DSR, PBO and baselines of each horizon (docs/statistics.md), before the board is written
        files = {m: config_files(Path(exp.configs_dir) / Path(get_model(m).config).name,
                                 [*exp.fit_args, *exp.model_args.get(m, [])]) for m in models}  # fmt: skip
        rows = choose_champions(rows, out, exp.champion_metric, exp.pbo_partitions, trials_tried(rows, files, out))
        board = write_walkforward_leaderboard(rows, out, exp.champion_metric)
        if parent:
            finish_run(tracking, parent)
        print(f"\nleaderboard: {out / 'leaderboard.md'}", flush=True)
        if console.tables_shown():
            print(terminal_table(board, WALKFORWARD_TERMINAL), flush=True)
        return board.to_dict("records")
    stale = [(f"{m}_h{h}", done[-1][0]) for m, h, c in cells
             if (done := finished_runs(runs / f"{m}_h{h}")) and fingerprint(c) not in {f for _, f in done}]
    stale += [(f"{m}_h{h}", old) for m, h, c in cells if (old := interrupted_run(c, runs / f"{m}_h{h}")[1])]
    if stale and exp.on_change == "refuse":  # before any cell trains
        raise ConfigError(f"{stale[0][0]}: its run {stale[0][1]} was trained with another config; "
                          f"set on_change: rerun to train the {len(stale)} changed cell(s) again")  # fmt: skip
    rows: dict[str, dict] = {}
    todo: list[CellSpec] = []
    before: dict[str, set[Path]] = {}
    skipped: list[tuple[str, Outcome]] = []
    for model, horizon, config in cells:
        cell = f"{model}_h{horizon}"
        finished = finished_runs(runs / cell)
        match = [run for run, fp in finished if fp == fingerprint(config)]
        if match:
            if not (match[-1] / CELL_RECORD).is_file():  # finished just as a stop came: record it now
                record_cell(match[-1], config)
            metric = key_metric(config, match[-1] / "metrics.json")
            skipped.append((cell, Outcome("skipped", *metric, str(match[-1]))))
            rows[cell] = row(model, horizon, "member", match[-1], "done")
            continue
        if finished:
            console.say(f"{cell}: config changed since {finished[-1][0]}, training it again")
        resume, old = interrupted_run(config, runs / cell)
        if resume is not None:
            console.say(f"{cell}: resuming its interrupted run from {resume}")
        elif old is not None:  # never resumed: its checkpoint holds another config's model
            console.say(f"{cell}: its interrupted run {old} was started with another config; "
                        "training it from the start")  # fmt: skip
        before[cell] = {run for run, _ in finished}
        todo.append(CellSpec(cell, str(runs / cell), config, exp.launcher.retries))
    grid = {f"{m}_h{h}": (m, h) for m, h, _ in cells}

    def on_done(spec: CellSpec, result: CellResult) -> Outcome:
        """Record a finished cell (its ``cell.json`` and leaderboard row); what its progress line says."""
        model, horizon = grid[spec.key]
        new = [run for run, _ in finished_runs(Path(spec.folder)) if run not in before[spec.key]]
        done = new[-1] if new else None
        if done is not None:
            record_cell(done, spec.config)
        if result.code != 0 or done is None:  # reported and recorded; the other cells go on
            rows[spec.key] = row(model, horizon, "member", None, "failed", result.message)
            return Outcome("failed", note=f"{result.message}; see {Path(spec.folder) / 'cell.log'}")
        rows[spec.key] = row(model, horizon, "member", done, "done")
        return Outcome("done", *key_metric(spec.config, done / "metrics.json"), str(done))

    run_cells(launcher, todo, skipped, len(cells), on_done)
    members = [rows[f"{m}_h{h}"] for m, h, _ in cells]
    blends, fitted = [], False
    for horizon in exp.horizons:
        done_runs = [Path(r["run_dir"]) for r in members if r["horizon"] == horizon and r["status"] == "done"]
        for method in exp.blends if len(done_runs) >= 2 else []:
            # every member's section is its config's with the experiment's laid over it: blends book as they do
            name = f"ensemble_{method}_h{horizon}"
            run_dir = finished_blend(runs / name, method, done_runs, horizon, exp.blend_options, "val")
            if run_dir is not None:
                console.say(f"blend {name}: skipped (finished earlier) ({run_dir})")
            else:
                run_dir = blend(done_runs, method, runs, name=name, options=exp.blend_options, root=out)
                fitted = True
            blends.append(row(f"ensemble_{method}", horizon, "blend", run_dir, "done"))
    if fitted:
        console.say(VAL_NOTE)
    board = write_leaderboard(members + blends, out)
    if parent:
        finish_run(tracking, parent)
    if console.tables_shown():
        print(f"\nleaderboard: {out / 'leaderboard.md'} (each cell's log: {runs}/<model>_h<horizon>/cell.log)")
        print(terminal_table(board), flush=True)
    return board.to_dict("records")

