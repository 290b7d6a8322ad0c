"""Self-contained model exports, the MLflow Model Registry, and predicting a parquet file with either.

An export folder holds ``model/`` (a weights-only Lightning checkpoint, or the tree library's native
file with its sidecar), ``config.yaml`` (the run's config), ``metadata.json`` (family, feature list,
horizon, seq_len) and ``metrics.json``. Nothing in it is pickled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble.data.contract import DataContractError, detect_roles
from ensemble.data.panel import load_split, open_parquet
from ensemble.data.windows import valid_ends
from ensemble.io import write_json
from ensemble.training.artifacts import predictions_frame
from ensemble.training.config import read_yaml
from ensemble.training.family import ExportError, family_for, family_named


def export_run(run_dir: Path, out: Path) -> Path:
    """Copy a finished run's best model, config and metrics into a self-contained folder."""
    run_dir = Path(run_dir)
    config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
    for path in (config_path, metrics_path):
        if not path.is_file():
            raise ExportError(f"{run_dir}: not a finished run (missing {path.name})")
    config = read_yaml(config_path)
    family = family_for(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir(exist_ok=True)
    for name, f in family.export_files(run_dir).items():
        shutil.copy2(f, out / "model" / name)
    shutil.copy2(config_path, out / "config.yaml")
    shutil.copy2(metrics_path, out / "metrics.json")
    write_json(out / "metadata.json", {
        "family": family.name,
        "model_class": config["model"]["class_path"],
        **family.export_metadata(out / "model"),
        "seq_len": int(config["data"].get("seq_len", 1)),
        "source_run": str(run_dir),
    })
    return out


def register(export_dir: Path, name: str, alias: str, tracking_uri: str, experiment: str = "ensemble") -> int:
    """Log the export as a run's artifacts and register it as ``models:/<name>@<alias>``; returns the version."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=f"register:{name}")
    client.log_artifacts(run.info.run_id, str(export_dir), artifact_path="export")
    metrics = json.loads((export_dir / "metrics.json").read_text())
    for key, value in metrics.items():
        if isinstance(value, float | int) and np.isfinite(value):
            client.log_metric(run.info.run_id, key, float(value))
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/export", run_id=run.info.run_id)
    client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def resolve(source: str, tracking_uri: str | None = None) -> Path:
    """An export folder, or ``models:/name@alias`` (or ``models:/name/version``) downloaded from MLflow."""
    if source.startswith("models:/"):
        import mlflow

        if tracking_uri:  # models:/ URIs resolve through the registry URI, not the tracking URI argument
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
    path = Path(source)
    if not (path / "metadata.json").is_file():
        raise ExportError(f"{source}: not an export folder (no metadata.json) and not a models:/ URI")
    return path


def _check_features(path: Path, expected: list[str], exclude: tuple[str, ...]) -> Any:
    roles = detect_roles(open_parquet(path).schema_arrow, path, exclude=exclude, require_label=False)
    missing = [f for f in expected if f not in roles.features]
    extra = [f for f in roles.features if f not in set(expected)]
    if missing or extra:
        raise DataContractError(
            f"{path}: features do not match the model's feature list: missing {missing[:10]}, extra {extra[:10]}"
        )
    return roles


def predict_file(source: str, data: Path, out: Path, tracking_uri: str | None = None) -> pd.DataFrame:
    """Predict every row of ``data`` that has ``seq_len - 1`` rows of history; labels are optional."""
    export = resolve(source, tracking_uri)
    meta = json.loads((export / "metadata.json").read_text())
    config = read_yaml(export / "config.yaml")
    exclude = tuple(config.get("data", {}).get("exclude") or ())
    roles = _check_features(Path(data), meta["feature_names"], exclude)
    # by name, in the model's order: the file's column order must not change what the model sees
    panel = load_split(Path(data), roles, meta["horizon"], require_labels=False, feature_names=meta["feature_names"])
    ends = valid_ends(panel, meta["seq_len"], require_label=False)
    probs = family_named(meta["family"]).predictor(export, config, meta)(panel, ends)
    parts = {"probs": probs, **{k: getattr(panel, k)[ends].numpy() for k in ("time", "symbol", "fwd_return")},
             "y": panel.label[ends].numpy()}
    df = predictions_frame(parts, panel.symbols, tz=panel.tz)
    from ensemble.io import write_parquet

    write_parquet(out, df)
    return df
