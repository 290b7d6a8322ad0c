"""MLflow parent runs: a study or an experiment is one run, its trials or cells are its children."""

from __future__ import annotations

from typing import Any


def parent_run(tracking: Any, run_name: str) -> str:
    """Create a parent run in the tracking section's experiment and return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking["mlflow_uri"])
    experiment = client.get_experiment_by_name(tracking["experiment"])
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(tracking["experiment"])
    return client.create_run(experiment_id, run_name=run_name).info.run_id


def finish_run(tracking: Any, run_id: str, status: str = "FINISHED") -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking["mlflow_uri"]).set_terminated(run_id, status)
