"""``TreeTrainer``: a small trainer for non-gradient models (boosted trees), read like minGPT's."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from tqdm import tqdm

from ensemble.data import WindowDataModule
from ensemble.metrics import MetricSuite
from ensemble.runs import claim_run_dir
from ensemble.trees.base import TreeModel, TreeSplit
from ensemble.trees.callbacks import ModelCheckpoint, TreeCallback
from ensemble.trees.checkpoint import read_checkpoint
from ensemble.trees.devices import single_device

_SETUP_STAGE = {"val": "validate", "test": "test"}


class TreeTrainer:
    """Boosts a ``TreeModel`` in chunks of ``rounds_per_epoch`` rounds: one chunk is one "epoch". After each
    it evaluates val with the shared ``MetricSuite``, logs the same names as nets and fires ``on_epoch_end``.

    Args:
        max_epochs: at most ``max_epochs * rounds_per_epoch`` boosting rounds in all, resumes included.
        rounds_per_epoch: boosting rounds between two val evaluations.
        accelerator: ``cpu`` (default: GPU tree training changes results), ``cuda``/``gpu`` or ``auto``.
        devices: exactly one device; a one-element list picks the GPU index.
        strategy: single-device only.
        callbacks: e.g. ``ensemble.trees.EarlyStopping``; a ``ModelCheckpoint`` is added when missing.
        enable_progress_bar: a tqdm bar over rounds.
        enable_model_summary: print the model, its data and its library parameters when fit starts.
        enable_checkpointing: add the default ``ModelCheckpoint`` when none is given.
        logger: Lightning loggers (TensorBoard, MLflow, ...); the CLI builds the run's from ``tracking``.
        default_root_dir: the run directory (``log_dir``); a fresh ``lightning_logs/<model>/version_N`` if None.
    """

    def __init__(
        self,
        max_epochs: int = 100,
        rounds_per_epoch: int = 10,
        accelerator: str = "cpu",
        devices: int | str | list[int] = 1,
        strategy: str | None = "auto",
        callbacks: list[TreeCallback] | None = None,
        enable_progress_bar: bool = True,
        enable_model_summary: bool = True,
        enable_checkpointing: bool = True,
        logger: bool | list[Logger] | None = None,
        default_root_dir: str | Path | None = None,
    ) -> None:
        if max_epochs < 1 or rounds_per_epoch < 1:
            raise ValueError(
                f"trainer.max_epochs and rounds_per_epoch must be >= 1, got {max_epochs}, {rounds_per_epoch}"
            )
        self.device = single_device(accelerator, devices, strategy)
        self.max_epochs, self.rounds_per_epoch = max_epochs, rounds_per_epoch
        self.callbacks = list(callbacks or [])
        if enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in self.callbacks):
            self.callbacks.append(ModelCheckpoint())
        # checkpoints last, so they store the other callbacks' updated state (Lightning's order too)
        self.callbacks.sort(key=lambda c: isinstance(c, ModelCheckpoint))
        self.enable_progress_bar, self.enable_model_summary = enable_progress_bar, enable_model_summary
        self.loggers: list[Logger] = list(logger) if isinstance(logger, list) else []
        self.default_root_dir = Path(default_root_dir) if default_root_dir is not None else None
        self.current_epoch, self.global_step, self.should_stop = 0, 0, False
        self.callback_metrics: dict[str, float] = {}

    @property
    def log_dir(self) -> Path | None:
        return self.default_root_dir

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        return next((c for c in self.callbacks if isinstance(c, ModelCheckpoint)), None)

    def trigger(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            hook = getattr(callback, event, None)
            if hook is not None:
                hook(self, *args)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def evaluate(self, probs: np.ndarray, data: TreeSplit, stage: str, model: TreeModel) -> dict[str, float]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tens of thousands of rows: more threads only contend with the library's own
        try:
            suite = MetricSuite(stage, model.horizon, model.bars_per_year)
            suite.update(
                torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32)),
                torch.from_numpy(data.y),
                torch.from_numpy(data.time),
                torch.from_numpy(data.fwd_return),
                symbol=torch.from_numpy(data.symbol),
            )
            metrics = suite.compute()
        finally:
            torch.set_num_threads(threads)
        metrics[f"{stage}/loss"] = metrics[f"{stage}/log_loss"]  # the nets' key; trees optimise log loss
        return metrics

    def checkpoint_state(self) -> dict[str, Any]:
        callbacks = {type(c).__name__: c.state_dict() for c in self.callbacks}
        return {
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "metrics": self.callback_metrics,
            "callbacks": {k: v for k, v in callbacks.items() if v},
        }

    def _setup(self, model: TreeModel) -> None:
        model.device = self.device
        if self.default_root_dir is None:
            self.default_root_dir = claim_run_dir(Path("lightning_logs") / model.name)

    def fit(self, model: TreeModel, datamodule: WindowDataModule, ckpt_path: str | Path | None = None) -> None:
        """Boost until ``max_epochs`` or a callback sets ``should_stop``; ``ckpt_path`` continues a checkpoint."""
        self._setup(model)
        datamodule.setup("fit")
        init_from, state = read_checkpoint(ckpt_path, model) if ckpt_path is not None else (None, {})
        train = model.split(datamodule.panel("train"), datamodule.ends["train"])
        val = model.split(datamodule.panel("val"), datamodule.ends["val"])
        model.start(train, val, init_from)
        self.global_step, self.current_epoch, self.should_stop = model.num_rounds, state.get("epoch", -1) + 1, False
        for callback in self.callbacks:
            callback.load_state_dict(state.get("callbacks", {}).get(type(callback).__name__) or callback.state_dict())
        for logger in self.loggers:
            logger.log_hyperparams({**model.hparams(), "rounds_per_epoch": self.rounds_per_epoch})
        self._check_monitors(self.evaluate(np.full((len(val.y), 3), 1 / 3), val, "val", model))
        if self.enable_model_summary:
            print(f"{model.name} on {self.device}: train/val {len(train.y)}/{len(val.y)} rows x "
                  f"{train.X.shape[1]} columns, from round {model.num_rounds}\n  {model.library_params()}")  # fmt: skip
        del train  # the library holds its own copy
        self.trigger("on_fit_start", model)
        bar = tqdm(
            total=self.max_epochs * self.rounds_per_epoch,
            initial=self.global_step,
            unit="round",
            desc=f"{model.name} epoch {self.current_epoch}",
            disable=not self.enable_progress_bar,
        )
        while self.current_epoch < self.max_epochs and not self.should_stop:
            model.boost(self.rounds_per_epoch)
            if model.num_rounds == self.global_step:  # LightGBM stops adding trees once no split is allowed
                warnings.warn(f"{model.name} added no tree in epoch {self.current_epoch}: stopping", stacklevel=2)
                break
            self.global_step = model.num_rounds
            self.callback_metrics = self.evaluate(model.val_proba(), val, "val", model)
            self.log_metrics({**self.callback_metrics, "epoch": self.current_epoch})
            self.trigger("on_epoch_end", model)
            bar.update(self.rounds_per_epoch)
            bar.set_description(f"{model.name} epoch {self.current_epoch}")
            bar.set_postfix({"val/f1_macro": f"{self.callback_metrics['val/f1_macro']:.4f}"})
            self.current_epoch += 1
        bar.close()
        self.trigger("on_fit_end", model)
        self._finalize()

    def _check_monitors(self, metrics: dict[str, float]) -> None:
        # fail before the first round, not after it
        for callback in self.callbacks:
            monitor = getattr(callback, "monitor", None)
            if monitor is not None and monitor not in metrics:
                raise KeyError(
                    f"{type(callback).__name__} monitor '{monitor}' is not a metric; use one of {sorted(metrics)}"
                )

    def _run_split(self, model: TreeModel, datamodule: WindowDataModule, split: str, ckpt_path: str | Path | None):
        self._setup(model)
        if ckpt_path is not None:
            model_file, state = read_checkpoint(ckpt_path, model)
            model.load(model_file)
            self.global_step = state.get("global_step", model.num_rounds)
        if model.num_rounds == 0:
            raise ValueError("no trained tree model to evaluate: fit one, or pass ckpt_path")
        datamodule.setup(_SETUP_STAGE.get(split, "predict"))
        data = model.split(datamodule.panel(split), datamodule.ends[split])
        return data, model.predict_proba(data.X)

    def _evaluate(self, model: TreeModel, datamodule: WindowDataModule, split: str, ckpt_path) -> dict[str, float]:
        data, probs = self._run_split(model, datamodule, split, ckpt_path)
        metrics = self.evaluate(probs, data, split, model)
        self.log_metrics(metrics)
        self.trigger("on_evaluate_end", model, split, data, probs, metrics)
        self._finalize()
        return metrics

    def validate(self, model: TreeModel, datamodule: WindowDataModule, ckpt_path: str | Path | None = None) -> dict:
        """Metrics (``val/...``) of the model, or of the checkpoint at ``ckpt_path``, on the val split."""
        return self._evaluate(model, datamodule, "val", ckpt_path)

    def test(self, model: TreeModel, datamodule: WindowDataModule, ckpt_path: str | Path | None = None) -> dict:
        """Metrics (``test/...``) of the model, or of the checkpoint at ``ckpt_path``, on the test split."""
        return self._evaluate(model, datamodule, "test", ckpt_path)

    def predict(
        self, model: TreeModel, datamodule: WindowDataModule, ckpt_path: str | Path | None = None
    ) -> np.ndarray:
        """(N, 3) class probabilities on ``data.predict_split``, written to ``predictions/predict.parquet``."""
        data, probs = self._run_split(model, datamodule, datamodule.predict_split, ckpt_path)
        self.trigger("on_evaluate_end", model, "predict", data, probs, {})
        self._finalize()
        return probs

    def _finalize(self) -> None:
        for logger in self.loggers:
            logger.finalize("success")
