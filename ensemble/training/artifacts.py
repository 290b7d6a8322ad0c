"""Write every run's artifacts in one layout: predictions, metrics.json and plots.

The same ``write_stage`` serves the Lightning callback (nets, ``training/callbacks.py``), the tree trainer
and blends, so a leaderboard can compare them row for row. Nothing here imports Lightning.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ensemble import console
from ensemble.data.constants import NUM_CLASSES
from ensemble.io import atomic_write, write_figure, write_json, write_parquet
from ensemble.metrics import TradingConfig
from ensemble.metrics.curves import equity_curves, ic_series
from ensemble.training.plots import (
    confusion_matrix_figure,
    equity_curve_figure,
    feature_importance_figure,
    ic_figure,
    reliability_figure,
)

PROB_COLUMNS = ("prob_short", "prob_flat", "prob_long")
IMPORTANCE_CSV, IMPORTANCE_PNG = "feature_importance.csv", "feature_importance.png"


def predictions_frame(parts: dict[str, np.ndarray], symbols: list[str], tz: str | None = None) -> pd.DataFrame:
    """Columns: datetime, symbol, label, class probabilities, prediction, fwd_return.

    ``parts["time"]`` is int64 ns UTC; with ``tz`` (the input's timezone) datetime is given back in it,
    so the frame joins on (datetime, symbol) with the input it came from.
    """
    probs, y = parts["probs"], parts["y"]
    label = (y - 1).astype(np.int8)
    if (y < 0).any():  # predicting new data: unknown labels stay missing, never a fake class
        label = pd.Series(y - 1, dtype="Int8").mask(y < 0)
    df = pd.DataFrame(
        {
            "datetime": _datetimes(parts["time"], tz),
            "symbol": np.asarray(symbols, dtype=object)[parts["symbol"]],
            "label": label,
            **{c: probs[:, i].astype(np.float32) for i, c in enumerate(PROB_COLUMNS)},
            "prediction": probs.argmax(axis=1).astype(np.int8) - 1,
            "fwd_return": parts["fwd_return"].astype(np.float32),
        }
    )
    return df.sort_values(["datetime", "symbol"], kind="stable").reset_index(drop=True)


def _datetimes(ns: np.ndarray, tz: str | None) -> np.ndarray | pd.DatetimeIndex:
    naive = ns.astype("datetime64[ns]")
    return naive if tz is None else pd.DatetimeIndex(naive).tz_localize("UTC").tz_convert(tz)


def utc_ns(datetimes: pd.Series) -> np.ndarray:
    """(N,) int64 ns since the epoch, UTC, of a predictions frame's datetime column, tz-aware or naive UTC."""
    if isinstance(datetimes.dtype, pd.DatetimeTZDtype):
        datetimes = datetimes.dt.tz_convert(None)
    return datetimes.to_numpy().astype("datetime64[ns]").astype("int64")


def update_metrics_json(run_dir: Path, values: dict[str, Any]) -> Path:
    """Merge ``values`` into the run's ``metrics.json`` (written atomically)."""
    path = run_dir / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(values)
    return write_json(path, current)


def checkpoint_name(run_dir: Path, ckpt: str | Path | None) -> str | None:
    """How ``metrics.json`` names the checkpoint a split was evaluated from: relative to the run when inside
    it (``checkpoints/best-03.ckpt``), else the full path; None for the in-memory weights."""
    if not ckpt:
        return None
    path = Path(ckpt).resolve()
    return str(path.relative_to(run_dir.resolve())) if path.is_relative_to(run_dir.resolve()) else str(path)


def record_split_metrics(run_dir: Path, split: str, metrics: dict[str, float], ckpt: str | Path | None) -> Path:
    """Write ``split``'s metrics with ``checkpoint/<split>``, the checkpoint they came from.

    Evaluating another checkpoint than the one the other split's metrics came from (``ensemble test
    --ckpt_path last`` after a fit judged the best) is allowed, but never silent: both checkpoints stay
    recorded and a note names them.
    """
    name = checkpoint_name(run_dir, ckpt)
    path = update_metrics_json(run_dir, {**metrics, f"checkpoint/{split}": name})
    recorded = json.loads(path.read_text())
    others = {s: recorded[f"checkpoint/{s}"] for s in ("val", "test") if s != split and f"checkpoint/{s}" in recorded}
    for other, other_name in others.items():
        if other_name != name and any(k.startswith(f"{other}/") for k in recorded):
            mine, theirs = name or "the in-memory weights", other_name or "the in-memory weights"
            console.say(f"note: {path} now holds {split}/* of {mine} and {other}/* of {theirs} "
                        f"(see checkpoint/{split}, checkpoint/{other})")  # fmt: skip
    return path


def _is_mlflow(logger: Any) -> bool:
    return hasattr(logger, "run_id") and hasattr(logger.experiment, "log_artifact")  # MLFlowLogger's shape


def log_figure(loggers: list[Any], fig: Any, tag: str, path: Path, step: int) -> None:
    """Send a figure, already written to the PNG ``path``, to every logger that takes one: TensorBoard as that
    image (decoded, not drawn again: a draw costs more than the decode), MLflow as the PNG file. Duck-typed,
    so writing artifacts never imports Lightning."""
    for logger in loggers:
        if hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard's SummaryWriter
            from PIL import Image

            with Image.open(path) as png:
                pixels = np.asarray(png.convert("RGB"))  # height x width x 3, uint8
            logger.experiment.add_image(tag, pixels, global_step=step, dataformats="HWC")
        elif _is_mlflow(logger):
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="plots")


def log_file(loggers: list[Any], path: Path, folder: str) -> None:
    """Attach a file to every MLflow logger (TensorBoard has no place for files)."""
    for logger in loggers:
        if _is_mlflow(logger):
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=folder)


_FIGURES = contextvars.ContextVar("ensemble_stage_figures", default=True)


@contextlib.contextmanager
def stage_figures_skipped() -> Iterator[None]:
    """Within it, ``write_stage`` writes predictions and metrics but draws no figures: for an evaluation that is
    redone at once and would overwrite them (val at T = 1, re-evaluated after calibration). Drawing the four
    figures costs more CPU than a small model's evaluation."""
    token = _FIGURES.set(False)
    try:
        yield
    finally:
        _FIGURES.reset(token)


def write_stage(
    run_dir: Path,
    split: str,
    df: pd.DataFrame,
    metrics: dict[str, float],
    horizon: int,
    loggers: list[Any],
    step: int,
    ckpt: str | Path | None = None,
    trading: TradingConfig | None = None,
    model: str | None = None,
    partial: bool = False,
    temperature: float | None = None,
) -> None:
    """Predictions parquet, metrics.json entries (with the checkpoint ``ckpt`` they came from) and plots for
    one evaluated split. ``model`` names the model in the figures' titles (default: the run's folder name);
    ``partial`` (recorded as ``{split}/partial``) says only part of the split was evaluated; ``temperature``
    (recorded as ``calibration/temperature``) is the one the probabilities were scaled with (None: no model
    temperature, e.g. a blend)."""
    import matplotlib.pyplot as plt

    pred_path = write_parquet(run_dir / "predictions" / f"{split}.parquet", df)
    log_file(loggers, pred_path, "predictions")
    if split == "predict":
        return
    metrics_path = record_split_metrics(run_dir, split, {**metrics, f"{split}/partial": partial}, ckpt)
    if trading is not None:  # the book these numbers were charged with (a resume may have changed it)
        metrics_path = update_metrics_json(run_dir, {f"trading/{split}": trading.as_dict()})
    if temperature is not None:
        metrics_path = update_metrics_json(run_dir, {"calibration/temperature": temperature})
    log_file(loggers, metrics_path, "")
    if not _FIGURES.get():
        return
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(cm, (df["label"].to_numpy() + 1, df["prediction"].to_numpy() + 1), 1)
    time = torch.as_tensor(utc_ns(df["datetime"]))
    probs = torch.as_tensor(df[list(PROB_COLUMNS)].to_numpy(np.float64, copy=True))  # writable, as torch wants
    fwd_return = torch.as_tensor(df["fwd_return"].to_numpy(np.float64, copy=True))
    symbol = torch.as_tensor(pd.factorize(df["symbol"], sort=True)[0])
    curves = equity_curves(time, symbol, probs, fwd_return, horizon, trading)
    ic = ic_series(time, probs, fwd_return)
    name = f"{model or run_dir.parent.name} h={horizon} {split}"
    figures = {
        "confusion_matrix": confusion_matrix_figure(cm, f"{name}: confusion matrix"),
        "equity_curve": equity_curve_figure(
            curves.times.numpy().astype("datetime64[ns]"), curves.gross.numpy(),
            f"{name}: equity ({(trading or TradingConfig()).describe()})",
            net=curves.net.numpy(),
            benchmark=None if (trading and trading.benchmark == "none") else curves.benchmark.numpy(),
        ),
        "ic": ic_figure(ic.times[ic.valid].numpy().astype("datetime64[ns]"), ic.ic[ic.valid].numpy(),
                        f"{name}: IC of p_long - p_short", skipped=int((~ic.valid).sum())),
        "reliability": reliability_figure(probs.numpy(), df["label"].to_numpy(np.int64) + 1, name, temperature),
    }
    for name, fig in figures.items():
        path = write_figure(run_dir / "plots" / f"{split}_{name}.png", fig)
        log_figure(loggers, fig, f"{split}/{name}", path, step)
        plt.close(fig)


def write_importance(plots: Path, importance: pd.Series, column: str, title: str, loggers: list[Any], step: int,
                     top: int = 30, xlabel: str = "importance") -> None:  # fmt: skip
    """``plots/feature_importance.csv`` (every feature) and ``.png`` (those above 0) for one model, logged like
    other plots.

    Args:
        importance: importance per feature (index: feature names), e.g. normalised gain or mean selection weight.
        column: the CSV column it is stored under; other columns of the same features (another split of the
            same run) are kept.
        title: the plot's title, naming the model, horizon, split and the kind of importance.
        xlabel: the value axis, with its unit (e.g. "gain, share of the total").
    """
    import matplotlib.pyplot as plt

    csv_path = plots / IMPORTANCE_CSV
    table = pd.DataFrame(index=pd.Index(importance.index, name="feature"))
    if csv_path.exists():  # keep the other split's column from the same run
        before = pd.read_csv(csv_path, index_col="feature")
        if set(before.index) == set(importance.index):
            table = before.reindex(importance.index)
    table[column] = importance
    table = table.sort_values(column, ascending=False)
    atomic_write(csv_path, lambda p: table.to_csv(p, index_label="feature"))
    log_file(loggers, csv_path, "plots")
    fig = feature_importance_figure(importance, title, xlabel, top=top)
    png_path = write_figure(plots / IMPORTANCE_PNG, fig)
    log_figure(loggers, fig, f"{column}/feature_importance", png_path, step)
    plt.close(fig)
