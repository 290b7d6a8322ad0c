"""The study summary: trials table (CSV), optimisation history and parameter importances (PNG)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from ensemble.data.split_data import SplitData
from ensemble.io import atomic_write, write_figure
from ensemble.training.config import model_short_name


def study_subject(base: Mapping[str, Any]) -> str:
    """``lstm h=5``: the model and horizon every trial of a study over the run config ``base`` trains."""
    default = inspect.signature(SplitData).parameters["horizon"].default
    return f"{model_short_name(base)} h={(base.get('data') or {}).get('horizon', default)}"


def write_report(study: optuna.Study, out: Path, metric: str = "objective", subject: str = "") -> None:
    """``trials.csv``, ``history.png`` (the tuned metric per trial, best so far) and ``param_importances.png``
    under ``out``; the figures name ``subject`` (``study_subject``), the metric and its direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the plots are "experimental"
    out.mkdir(parents=True, exist_ok=True)
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    atomic_write(out / "trials.csv", lambda p: table.to_csv(p, index=False))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    goal = f"{'maximize' if maximize else 'minimize'}: {'higher' if maximize else 'lower'} is better"
    who = f"{subject}, study '{study.study_name}'" if subject else f"study '{study.study_name}'"
    if complete:
        ax = plot_optimization_history(study, target_name=metric)
        ax.set_title(f"{who}: {metric} per trial ({goal})", fontsize=9)
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{metric} (the tuned metric)")
        write_figure(out / "history.png", ax.figure)
        plt.close(ax.figure)
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        # named rather than the release's default; PED-ANOVA also copes with trials that all scored the same
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        ax = plot_param_importances(study, evaluator=evaluator, target_name=metric)
        ax.set_title(f"{who}: parameter importance for {metric} ({goal})", fontsize=9)
        ax.set_xlabel("importance (PED-ANOVA: how far the best trials' values of a key differ from all trials'; "
                      "shares sum to 1)", fontsize=8)  # fmt: skip
        ax.set_ylabel("search-space key")
        write_figure(out / "param_importances.png", ax.figure)
        plt.close(ax.figure)
