"""A finished run read back through the MLflow client: params, metrics and artifacts."""

import json

import pytest
from mlflow.tracking import MlflowClient

from ensemble.cli import main


@pytest.mark.parametrize("model", ["lstm", "lightgbm"])  # Lightning's loggers, and the tree road's own
def test_mlflow_run_has_params_metrics_and_artifacts(tmp_path, fit_args, model):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*fit_args(config=f"configs/{model}.yaml", epochs=1), "--tracking.mlflow", "true",
            "--tracking.mlflow_uri", uri, "--tracking.experiment", "unit"]
    assert main(["fit", *args]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("unit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == f"{model}_h5/version_0"
    assert run.data.params["horizon"] == "5"
    local = json.loads((tmp_path / f"runs/{model}_h5/version_0/metrics.json").read_text())
    for key in ("val/f1_macro", "test/f1_macro", "test/sharpe", "test/log_loss"):
        assert abs(run.data.metrics[key] - local[key]) < 1e-6, key
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "predictions", "metrics.json"} <= names
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/test_confusion_matrix.png" in plots and "plots/val_equity_curve.png" in plots


@pytest.mark.parametrize("model", ["lstm", "lightgbm"])
def test_tensorboard_events_hold_the_val_metrics(tmp_path, fit_args, model):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["fit", *fit_args(config=f"configs/{model}.yaml", epochs=2)]) == 0
    run = tmp_path / "runs" / f"{model}_h5" / "version_0"
    events = EventAccumulator(str(run)).Reload()
    assert "val/f1_macro" in events.Tags()["scalars"]
    logged = events.Scalars("val/f1_macro")[-1].value
    assert 0.0 <= logged <= 1.0 and len(list(run.glob("events.out.tfevents.*"))) >= 1
    # the figures reach TensorBoard as the very PNGs written under plots/ (same pixel size)
    from PIL import Image

    assert {"val/confusion_matrix", "test/equity_curve"} <= set(events.Tags()["images"])
    image = events.Images("test/equity_curve")[-1]
    with Image.open(run / "plots" / "test_equity_curve.png") as png:
        assert (image.width, image.height) == png.size
