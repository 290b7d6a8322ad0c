"""Where runs land and what they log to: the ``tracking`` config section, the run's loggers, and MLflow
parent runs (a study or an experiment is one run, its trials or cells are its children)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Tracking:
    """Where runs land.

    Args:
        save_dir: the folder that holds every run (``<save_dir>/<name>/version_N``).
        name: the run family's folder; default the model's short name and the horizon (``lstm_h5``,
            ``xgboost_h20``). Plain folder names joined by ``/`` (tuning names trials ``<study>/trial_N``); never
            absolute, never ``..``, so a run cannot land outside ``save_dir``.
        mlflow: also log to MLflow.
        mlflow_uri: the MLflow tracking store (``sqlite:///mlflow.db``, or a server URL).
        experiment: the MLflow experiment name.
        parent_run_id: nests this run under a study's or experiment's MLflow run.
    """

    save_dir: str = "lightning_logs"
    name: str | None = None
    mlflow: bool = False
    mlflow_uri: str = "sqlite:///mlflow.db"
    experiment: str = "ensemble"
    parent_run_id: str | None = None


def run_loggers(tracking: Tracking, version: str | None, lightning: bool = True, folder: Path | None = None,
                run_name: str | None = None) -> list[Any]:  # fmt: skip
    """TensorBoard first (Lightning takes the run folder from it), then MLflow when asked for; the same
    folders and run names for nets (Lightning's loggers) and trees (``loggers.py``, no Lightning import).

    The folder is ``save_dir/name/version`` unless ``folder`` is given (an evaluation's folder inside a run,
    ``runs.eval_dir``); ``run_name`` is the MLflow run's name (default ``name/version``)."""
    run_name = run_name or f"{tracking.name}/{version}"
    save_dir, name = (folder.parent, folder.name) if folder is not None else (tracking.save_dir, tracking.name)
    version = "" if folder is not None else version  # "": the folder itself, as Lightning joins the parts
    if not lightning:
        from ensemble.training.loggers import MLflowRunLogger, TensorBoardRunLogger

        plain: list[Any] = [TensorBoardRunLogger(save_dir, name, version)]
        if tracking.mlflow:
            plain.append(MLflowRunLogger(tracking.experiment, run_name, tracking.mlflow_uri, tracking.parent_run_id))
        return plain
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    loggers: list[Any] = [TensorBoardLogger(save_dir=str(save_dir), name=name, version=version)]
    if tracking.mlflow:
        tags = {"mlflow.parentRunId": tracking.parent_run_id} if tracking.parent_run_id else None
        loggers.append(MLFlowLogger(experiment_name=tracking.experiment, run_name=run_name,
                                    tracking_uri=tracking.mlflow_uri, log_model=False, tags=tags))  # fmt: skip
    return loggers


def parent_run(tracking: Tracking, run_name: str) -> str:
    """Create a parent run in the tracking section's MLflow experiment and return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.mlflow_uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(tracking.experiment)
    return client.create_run(experiment_id, run_name=run_name).info.run_id


def finish_run(tracking: Tracking, run_id: str, status: str = "FINISHED") -> None:
    """Mark a parent run finished (or ``FAILED``)."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking.mlflow_uri).set_terminated(run_id, status)
