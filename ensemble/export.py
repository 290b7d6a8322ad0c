"""Self-contained model exports, the MLflow Model Registry, and predicting a parquet file with either.

An export folder holds ``model/`` (a weights-only Lightning checkpoint, or the tree library's native
file with its sidecar), ``config.yaml`` (the run's config), ``metadata.json`` (family, feature list,
horizon, seq_len) and ``metrics.json``. Nothing in it is pickled, and nothing it names is imported unless
it is a registered model or on the allow-list (``training/trust.py``): an export may come from elsewhere.

An export is built beside its target and renamed into place, so a crash never leaves half of one, and
a new export replaces an old one whole instead of mixing with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble.data.contract import DataContractError, detect_roles
from ensemble.data.normalize import Normalizer
from ensemble.data.panel import load_split, open_parquet
from ensemble.data.windows import valid_ends
from ensemble.io import write_json
from ensemble.training.artifacts import predictions_frame
from ensemble.training.config import read_yaml
from ensemble.training.family import ExportError, family_for, family_named
from ensemble.training.trust import check_import_paths

# a model's export, or a blend's (export_blend.py: its members' exports and the fitted blend)
EXPORT_ENTRIES = frozenset({"model", "config.yaml", "metadata.json", "metrics.json", "members", "blend.json"})


def _check_target(out: Path) -> bool:
    """Whether ``out`` holds an export to replace; an empty or missing folder is free.

    Raises:
        ExportError: ``out`` is a file, or a folder with anything but an export in it (never deleted).
    """
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: export target is a file, not a folder")
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if entries and ("metadata.json" not in entries or not entries <= EXPORT_ENTRIES):
        raise ExportError(f"{out}: export target is not empty and not an export ({', '.join(sorted(entries)[:5])}); "
                          "choose an empty or new folder")  # fmt: skip
    return bool(entries)


def build_export(out: Path, fill: Callable[[Path], None]) -> Path:
    """Build an export with ``fill(staging)`` in a temp folder beside ``out``, then rename it into place: an
    existing export at ``out`` is replaced whole, never mixed with the new one, and a crash leaves no half export.

    Raises:
        ExportError: ``out`` holds something other than an export.
    """
    out = Path(out)
    replacing = _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging, old = out.with_name(f".{out.name}.{token}.partial"), out.with_name(f".{out.name}.{token}.old")
    try:
        staging.mkdir()
        fill(staging)
        if replacing:
            out.rename(old)  # the old export leaves whole, then the new one arrives whole
        elif out.is_dir():
            out.rmdir()  # empty
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def export_run(run_dir: Path, out: Path) -> Path:
    """Copy a finished run's best model, config and metrics into a self-contained folder (``build_export``).

    Raises:
        ExportError: not a finished run, or ``out`` holds something other than an export.
    """
    run_dir, out = Path(run_dir), Path(out)
    config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
    for path in (config_path, metrics_path):
        if not path.is_file():
            raise ExportError(f"{run_dir}: not a finished run (missing {path.name})")
    config = read_yaml(config_path)
    family = family_for(config)

    def fill(staging: Path) -> None:
        (staging / "model").mkdir()
        for name, f in family.export_files(run_dir).items():
            shutil.copy2(f, staging / "model" / name)
        shutil.copy2(config_path, staging / "config.yaml")
        shutil.copy2(metrics_path, staging / "metrics.json")
        write_json(staging / "metadata.json", {
            "family": family.name,
            "model_class": config["model"]["class_path"],
            **family.export_metadata(staging / "model"),
            "seq_len": int(config["data"].get("seq_len", 1)),
            "source_run": str(run_dir),
        })

    return build_export(out, fill)


def register(export_dir: Path, name: str, alias: str, tracking_uri: str, experiment: str = "ensemble") -> int:
    """Log the export as a run's artifacts and register it as ``models:/<name>@<alias>``; returns the version."""
    from mlflow.tracking import MlflowClient

    # the registry named explicitly: left unset, MLflow would use a process-wide registry URI set by anyone
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
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


def cache_dir() -> Path:
    """Where registered models are kept once downloaded: ``$ENSEMBLE_CACHE``, else the user's cache folder."""
    explicit = os.environ.get("ENSEMBLE_CACHE")
    if explicit:
        return Path(explicit) / "models"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ensemble" / "models"


def _model_version(source: str, client: Any) -> Any:
    """The registry's model version behind ``models:/name@alias`` or ``models:/name/version``."""
    name, sep, alias = source.removeprefix("models:/").partition("@")
    if sep:
        return client.get_model_version_by_alias(name, alias)
    name, _, version = name.rpartition("/")
    if not name or not version.isdigit():
        raise ExportError(f"{source}: not a models:/ URI; write models:/<name>@<alias> or models:/<name>/<version>")
    return client.get_model_version(name, version)


def download_registered(source: str, tracking_uri: str | None = None) -> Path:
    """The export of a registered model version, downloaded on first use into ``cache_dir()`` and reused.

    The cache is keyed by registry, name, version and the version's source, so an alias moved to a new version
    downloads that version once; a download lands in a temp folder beside its final place and is renamed into
    it whole, so a crash or a concurrent call never leaves a half copy that looks complete.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # every call names its store; MLflow's process-wide tracking and registry URIs are neither read nor set
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = _model_version(source, client)
        # the artifacts' real location: a models:/ URI would be resolved against the process-wide registry
        location = client.get_model_version_download_uri(version.name, version.version)
    except MlflowException as err:  # an unknown name, alias or version
        raise ExportError(f"{source}: {str(err.message).splitlines()[0]}") from err
    key = hashlib.sha256(f"{uri}|{version.name}|{version.version}|{version.source}".encode()).hexdigest()[:16]
    final = cache_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', version.name)}-v{version.version}-{key}"
    if (final / "metadata.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        if not sys.stderr.isatty():  # MLflow draws its download bar into logs and pipes too
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        got = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(staging), tracking_uri=uri))  # fmt: skip
        if not (got / "metadata.json").is_file():
            raise ExportError(f"{source}: version {version.version} holds no export (no metadata.json)")
        try:
            got.rename(final)
        except OSError:
            if not (final / "metadata.json").is_file():  # another process finished first: use its copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def resolve(source: str, tracking_uri: str | None = None) -> Path:
    """An export folder, or ``models:/name@alias`` (or ``models:/name/version``) from MLflow, downloaded once
    per model version into the local cache (``registry_cache.py``) and reused."""
    if source.startswith("models:/"):
        return download_registered(source, tracking_uri)
    path = Path(source)
    if not (path / "metadata.json").is_file():
        raise ExportError(f"{source}: not an export folder (no metadata.json) and not a models:/ URI")
    return path


def read_export(export: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, config) of an export, checked before anything in it is imported.

    Raises:
        ExportError: metadata.json is unreadable or incomplete.
        UntrustedFileError: the config or metadata names a class that is not a registered model or allowed.
    """
    path = export / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: damaged export metadata, not readable JSON ({err})") from err
    if meta.get("family") == "blend":  # its members are the models; export_blend.predict_any runs them
        raise ExportError(f"{path}: a blend's export, not one model's; predict it with ensemble predict --from")
    missing = [k for k in ("family", "model_class", "feature_names", "horizon", "seq_len") if k not in meta]
    if missing:
        raise ExportError(f"{path}: damaged export metadata, missing {', '.join(map(repr, missing))}")
    check_import_paths({"model_class": {"class_path": meta["model_class"]}}, str(path))
    config = read_yaml(export / "config.yaml")
    check_import_paths(config, str(export / "config.yaml"))
    return meta, config


def _check_features(path: Path, expected: list[str], exclude: tuple[str, ...]) -> Any:
    roles = detect_roles(open_parquet(path).schema_arrow, path, exclude=exclude, require_label=False)
    missing = [f for f in expected if f not in roles.features]
    extra = [f for f in roles.features if f not in set(expected)]
    if missing or extra:
        raise DataContractError(
            f"{path}: features do not match the model's feature list: missing {missing[:10]}, extra {extra[:10]}"
        )
    return roles


def unpredicted_path(out: Path) -> Path:
    """The side file beside ``out`` that lists, per symbol, the rows that got no prediction and why."""
    return out.with_name(f"{out.stem}.unpredicted.csv")


def unpredicted_rows(panel: Any, ends: Any, seq_len: int) -> pd.DataFrame:
    """Per symbol with rows left unpredicted: how many of its rows, why, and their first and last datetime.

    A window needs ``seq_len - 1`` earlier rows of the same symbol, so each symbol's first rows are warm-up, and
    a symbol with fewer than ``seq_len`` rows gets no prediction at all (too short).
    """
    predicted = np.zeros(len(panel), dtype=bool)
    predicted[np.asarray(ends)] = True
    codes, times = panel.symbol.numpy(), panel.time.numpy()
    rows = []
    for code in np.unique(codes):
        mine = codes == code
        missing = mine & ~predicted
        if not missing.any():
            continue
        total = int(mine.sum())
        short = total < seq_len
        reason = f"too short ({total} rows < seq_len {seq_len})" if short else f"warm-up (first {seq_len - 1})"
        stamps = times[missing].astype("datetime64[ns]")
        rows.append({"symbol": panel.symbols[code], "rows": total, "unpredicted": int(missing.sum()),
                     "reason": reason, "first_datetime": stamps.min(), "last_datetime": stamps.max()})  # fmt: skip
    columns = ["symbol", "rows", "unpredicted", "reason", "first_datetime", "last_datetime"]
    return pd.DataFrame(rows, columns=columns)


def unpredicted_summary(table: pd.DataFrame, predicted: int, side_file: Path) -> str:
    """One line: rows predicted, and per symbol the rows without a prediction and why."""
    if table.empty:
        return f"{predicted} predictions, every row predicted"
    per_symbol = [f"{r.symbol} {r.unpredicted} {r.reason}" for r in table.itertuples()]
    more = f", and {len(per_symbol) - 10} more symbols" if len(per_symbol) > 10 else ""
    return (f"{predicted} predictions; {int(table.unpredicted.sum())} rows without one: "
            f"{', '.join(per_symbol[:10])}{more} (see {side_file})")  # fmt: skip


@dataclass
class Predicted:
    """A model's predictions on an input file, before they become a predictions frame."""

    panel: Any  # SplitPanel: the input as read, rows sorted by symbol then time
    ends: np.ndarray  # (B,) int64 panel rows that got a prediction, ascending
    probs: np.ndarray  # (B, 3) class probabilities (short, flat, long) of those rows
    seq_len: int  # rows of a symbol's history a prediction needs, the row itself included


def predict_rows(export: Path, data: Path) -> Predicted:
    """Predict every row of ``data`` that has ``seq_len - 1`` rows of history with a (non-blend) export folder.

    Raises:
        DataContractError: the file's features differ from the model's, or no row has enough history.
        ExportError: damaged export metadata.
    """
    meta, config = read_export(export)
    exclude = tuple(config.get("data", {}).get("exclude") or ())
    roles = _check_features(Path(data), meta["feature_names"], exclude)
    # by name, in the model's order: the file's column order must not change what the model sees
    panel = load_split(Path(data), roles, meta["horizon"], require_labels=False, feature_names=meta["feature_names"])
    if meta.get("normalizer") is not None:  # the training run's statistics, never refitted on this file
        Normalizer.from_state(meta["normalizer"], str(export / "metadata.json")).apply(panel, meta["feature_names"])
    ends = valid_ends(panel, meta["seq_len"], require_label=False)
    if len(ends) == 0:
        raise DataContractError(f"{data}: no row has the {int(meta['seq_len']) - 1} earlier rows of its symbol that "
                                f"a window needs; every symbol is too short (seq_len {meta['seq_len']})")  # fmt: skip
    probs = family_named(meta["family"]).predictor(export, config, meta)(panel, ends)
    return Predicted(panel, ends.numpy(), np.asarray(probs), int(meta["seq_len"]))


def predict_file(source: str, data: Path, out: Path, tracking_uri: str | None = None,
                 rows: Callable[[Path, Path], Predicted] = predict_rows) -> pd.DataFrame:  # fmt: skip
    """Predict every row of ``data`` that has ``seq_len - 1`` rows of history; labels are optional.

    ``rows`` predicts an export folder (``predict_rows``: one model; ``export_blend.predict_any``: blends too).
    Writes ``out`` and, beside it, ``unpredicted_path(out)``: the rows left without a prediction per symbol and
    why (header only when there are none). The returned frame's ``attrs["unpredicted"]`` holds that table.

    Raises:
        DataContractError: the file's features differ from the model's, or no row has enough history.
    """
    got = rows(resolve(source, tracking_uri), Path(data))
    panel, ends = got.panel, got.ends
    skipped = unpredicted_rows(panel, ends, got.seq_len)
    parts = {"probs": got.probs, **{k: getattr(panel, k)[ends].numpy() for k in ("time", "symbol", "fwd_return")},
             "y": panel.label[ends].numpy()}
    df = predictions_frame(parts, panel.symbols, tz=panel.tz)
    from ensemble.io import atomic_write, write_parquet

    write_parquet(out, df)
    atomic_write(unpredicted_path(out), lambda p: skipped.to_csv(p, index=False))
    df.attrs["unpredicted"] = skipped
    return df
