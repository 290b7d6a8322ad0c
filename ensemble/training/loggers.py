"""Run loggers for code that trains outside Lightning (trees): TensorBoard event files and MLflow runs.

They write what Lightning's ``TensorBoardLogger`` and ``MLFlowLogger`` write for nets (the same folders,
metric names, hyperparameters and run names), through the same libraries (``torch.utils.tensorboard``,
``MlflowClient``), so one dashboard compares both families; they only spare the tree road Lightning's
import. Each has ``experiment`` and (MLflow) ``run_id`` as Lightning's have, which is all that
``artifacts.log_figure`` and ``log_file`` look at.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol


class RunLogger(Protocol):
    """What ``TreeTrainer`` asks of a logger; these and Lightning's loggers (TensorBoard, MLflow, CSV) qualify."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_hyperparams(self, params: Any) -> None: ...

    def finalize(self, status: str) -> None: ...


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


class TensorBoardRunLogger:
    """Event files in ``<save_dir>/<name>/<version>``, as Lightning's ``TensorBoardLogger`` lays them out."""

    def __init__(self, save_dir: str | Path, name: str, version: str) -> None:
        self.log_dir = str(Path(save_dir) / name / version)
        self._writer: Any = None

    @property
    def experiment(self) -> Any:
        """The ``SummaryWriter``, opened on first use."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
        return self._writer

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.experiment.add_scalar(key, value, global_step=step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """The HPARAMS tab entry, written into the run's own event file as Lightning does."""
        from torch.utils.tensorboard.summary import hparams

        exp, ssi, sei = hparams(_flat(params), {})
        writer = self.experiment._get_file_writer()
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)

    def finalize(self, status: str) -> None:
        if self._writer is not None:
            self._writer.flush()


class MLflowRunLogger:
    """One MLflow run named ``run_name``, nested under ``parent_run_id`` when given."""

    def __init__(self, experiment_name: str, run_name: str, tracking_uri: str, parent_run_id: str | None) -> None:
        from mlflow.tracking import MlflowClient

        self.experiment = MlflowClient(tracking_uri=tracking_uri)
        found = self.experiment.get_experiment_by_name(experiment_name)
        experiment_id = found.experiment_id if found else self.experiment.create_experiment(experiment_name)
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else None
        self.run_id = self.experiment.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            if math.isfinite(value):  # MLflow refuses NaN; an undefined metric is simply not logged
                self.experiment.log_metric(self.run_id, key, value, step=step or 0)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        for key, value in _flat(params).items():
            self.experiment.log_param(self.run_id, key, str(value)[:6000])

    def finalize(self, status: str) -> None:
        self.experiment.set_terminated(self.run_id, "FINISHED" if status == "success" else "FAILED")
