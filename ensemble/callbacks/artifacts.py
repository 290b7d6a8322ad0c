"""Write every run's artifacts in one layout: predictions, metrics.json and plots.

The same ``write_stage`` serves the Lightning callback (nets) and the tree trainer, so a
leaderboard can compare the two row for row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

from ensemble.io import write_figure, write_json, write_parquet
from ensemble.metrics import TradingConfig
from ensemble.metrics.curves import equity_curves, ic_series
from ensemble.plots import confusion_matrix_figure, equity_curve_figure, ic_figure

PROB_COLUMNS = ("prob_short", "prob_flat", "prob_long")
_STAGE_SPLIT = {"validate": "val", "test": "test", "predict": "predict"}


def predictions_frame(parts: dict[str, np.ndarray], symbols: list[str]) -> pd.DataFrame:
    """Columns: datetime, symbol, label, class probabilities, prediction, fwd_return."""
    probs, y = parts["probs"], parts["y"]
    label = (y - 1).astype(np.int8)
    if (y < 0).any():  # predicting new data: unknown labels stay missing, never a fake class
        label = pd.Series(y - 1, dtype="Int8").mask(y < 0)
    df = pd.DataFrame(
        {
            "datetime": parts["time"].astype("datetime64[ns]"),
            "symbol": np.asarray(symbols, dtype=object)[parts["symbol"]],
            "label": label,
            **{c: probs[:, i].astype(np.float32) for i, c in enumerate(PROB_COLUMNS)},
            "prediction": probs.argmax(axis=1).astype(np.int8) - 1,
            "fwd_return": parts["fwd_return"].astype(np.float32),
        }
    )
    return df.sort_values(["datetime", "symbol"], kind="stable").reset_index(drop=True)


def update_metrics_json(run_dir: Path, values: dict[str, Any]) -> Path:
    path = run_dir / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(values)
    return write_json(path, current)


def log_figure(loggers: list[Any], fig: Any, tag: str, path: Path, step: int) -> None:
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="plots")


def log_file(loggers: list[Any], path: Path, folder: str) -> None:
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=folder)


def write_stage(
    run_dir: Path,
    split: str,
    df: pd.DataFrame,
    metrics: dict[str, float],
    horizon: int,
    loggers: list[Any],
    step: int,
    trading: TradingConfig | None = None,
    model: str | None = None,
) -> None:
    """Predictions parquet, metrics.json entries and plots for one evaluated split.

    ``model`` names the model in the figures' titles (default: the run's folder, ``{save_dir}/{name}/version_N``).
    """
    import matplotlib.pyplot as plt

    pred_path = write_parquet(run_dir / "predictions" / f"{split}.parquet", df)
    log_file(loggers, pred_path, "predictions")
    if split == "predict":
        return
    metrics_path = update_metrics_json(run_dir, metrics)
    log_file(loggers, metrics_path, "")
    cm = np.zeros((3, 3), dtype=np.int64)
    np.add.at(cm, (df["label"].to_numpy() + 1, df["prediction"].to_numpy() + 1), 1)
    time = torch.as_tensor(df["datetime"].to_numpy().astype("int64"))
    probs = torch.as_tensor(df[list(PROB_COLUMNS)].to_numpy(np.float64))
    fwd_return = torch.as_tensor(df["fwd_return"].to_numpy(np.float64))
    symbol = torch.as_tensor(pd.factorize(df["symbol"], sort=True)[0])
    curves = equity_curves(time, symbol, probs, fwd_return, horizon, trading)
    ic = ic_series(time, probs, fwd_return)
    name = f"{model or run_dir.parent.name} h={horizon} {split}"
    figures = {
        "confusion_matrix": confusion_matrix_figure(cm, f"{split} confusion matrix"),
        "equity_curve": equity_curve_figure(
            curves.times.numpy().astype("datetime64[ns]"), curves.gross.numpy(), f"{name}: equity",
            net=curves.net.numpy(),
            benchmark=None if (trading and trading.benchmark == "none") else curves.benchmark.numpy(),
        ),
        "ic": ic_figure(ic.times[ic.valid].numpy().astype("datetime64[ns]"), ic.ic[ic.valid].numpy(),
                        f"{name}: IC of p_long - p_short"),
    }
    for name, fig in figures.items():
        path = write_figure(run_dir / "plots" / f"{split}_{name}.png", fig)
        log_figure(loggers, fig, f"{split}/{name}", path, step)
        plt.close(fig)


class ArtifactWriter(Callback):
    """Collects predictions in ``validate``/``test``/``predict`` runs and writes the run's artifacts.

    During ``fit`` it stays out of the way: the CLI evaluates the best checkpoint afterwards.
    """

    def __init__(self) -> None:
        self._parts: list[dict[str, torch.Tensor]] = []

    def _collect(self, trainer: Trainer, outputs: Any, batch: dict[str, torch.Tensor]) -> None:
        if trainer.state.fn == "fit" or trainer.sanity_checking:
            return
        keep = {k: batch[k].detach().cpu() for k in ("y", "time", "symbol", "fwd_return", "row")}
        self._parts.append({**keep, "probs": outputs["probs"].detach().float().cpu()})

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def _gathered(self, trainer: Trainer) -> dict[str, np.ndarray]:
        local = {k: torch.cat([p[k] for p in self._parts]).numpy() for k in self._parts[0]} if self._parts else {}
        self._parts = []
        if trainer.world_size == 1:
            return local
        everyone: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(everyone, local)
        merged = [part for part in everyone if part]
        return {k: np.concatenate([part[k] for part in merged]) for k in merged[0]}

    def _finish(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            return
        split = _STAGE_SPLIT[trainer.state.fn.value]
        dm = trainer.datamodule
        if split == "predict":
            split = dm.predict_split
        parts = self._gathered(trainer)
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective: every rank asks
        if not trainer.is_global_zero or not parts:
            return
        prefix = f"{split}/"
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
        stage_name = "predict" if trainer.state.fn.value == "predict" else split
        df = predictions_frame(parts, dm.panel(split).symbols)
        write_stage(run_dir, stage_name, df, metrics, dm.horizon, trainer.loggers, trainer.global_step)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)
