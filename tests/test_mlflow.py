"""A finished run read back through the MLflow client: params, metrics and artifacts."""

import json

from mlflow.tracking import MlflowClient

from ensemble.cli import main


def test_mlflow_run_has_params_metrics_and_artifacts(tmp_path, fit_args):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*fit_args(epochs=1), "--tracking.mlflow", "true", "--tracking.mlflow_uri", uri,
            "--tracking.experiment", "unit"]
    assert main(["fit", *args]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("unit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "lstm/version_0"
    assert run.data.params["horizon"] == "5"
    local = json.loads((tmp_path / "runs/lstm/version_0/metrics.json").read_text())
    for key in ("val/f1_macro", "test/f1_macro", "test/sharpe", "test/log_loss"):
        assert abs(run.data.metrics[key] - local[key]) < 1e-6, key
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "predictions", "metrics.json"} <= names
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/test_confusion_matrix.png" in plots and "plots/val_equity_curve.png" in plots
