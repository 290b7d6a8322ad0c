"""``TreeTrainer``: a small trainer for non-gradient models (boosted trees), read like minGPT's."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import console
from ensemble.data.constants import NUM_CLASSES
from ensemble.data.split_data import SplitData
from ensemble.errors import ConfigError
from ensemble.metrics.calibration import calibrate_probs
from ensemble.models.trees.base import TreeModel
from ensemble.training.loggers import RunLogger
from ensemble.training.trees.callbacks import ModelCheckpoint, ProgressBar, TreeCallback, check_monitors
from ensemble.training.trees.checkpoint import native_file, read_checkpoint, sidecar_temperature
from ensemble.training.trees.devices import single_device

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
        callbacks: e.g. ``ensemble.training.trees.EarlyStopping``; a ``ModelCheckpoint`` is added when missing.
        enable_progress_bar: a bar over rounds on a terminal; without it (or off a terminal) one line per epoch.
        enable_model_summary: print the model, its data and its library parameters when fit starts.
        enable_checkpointing: add the default ``ModelCheckpoint`` when none is given.
        logger: loggers (``RunLogger``s: ours, or Lightning's); the training layer builds the run's from ``tracking``.
        default_root_dir: the run directory (``log_dir``) it writes into; the training layer claims it.
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
        logger: bool | list[RunLogger] | None = None,
        default_root_dir: str | Path | None = None,
    ) -> None:
        if max_epochs < 1 or rounds_per_epoch < 1:
            raise ConfigError(
                f"trainer.max_epochs and rounds_per_epoch must be >= 1, got {max_epochs}, {rounds_per_epoch}"
            )
        self.device = single_device(accelerator, devices, strategy)
        self.max_epochs, self.rounds_per_epoch = max_epochs, rounds_per_epoch
        self.callbacks = list(callbacks or [])
        if enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in self.callbacks):
            self.callbacks.append(ModelCheckpoint())
        self.callbacks.append(ProgressBar(bar=enable_progress_bar))
        # checkpoints last, so they store the other callbacks' updated state (Lightning's order too)
        self.callbacks.sort(key=lambda c: isinstance(c, ModelCheckpoint))
        self.enable_model_summary = enable_model_summary
        self.loggers: list[RunLogger] = list(logger) if isinstance(logger, list) else []
        self.default_root_dir = Path(default_root_dir) if default_root_dir is not None else None
        self.current_epoch, self.global_step, self.should_stop = 0, 0, False
        self._logged_step = 0  # loggers never see a step go back (see log_metrics)
        self.callback_metrics: dict[str, float] = {}
        self.ckpt_path: str | Path | None = None  # the checkpoint the last evaluation loaded
        self.datamodule_state: dict[str, Any] = {}  # the data's fitted normalisation, kept in every checkpoint
        self.temperature = 1.0  # the evaluated checkpoint's calibration (1: none); training never uses it

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
        # the final evaluation of the best checkpoint (an earlier round than the last epoch) is logged at the
        # latest step, not the checkpoint's: MLflow and TensorBoard show a metric's latest step as its value, as
        # Lightning's validate-after-fit does
        self._logged_step = max(self._logged_step, self.global_step)
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self._logged_step)

    def checkpoint_state(self) -> dict[str, Any]:
        callbacks = {type(c).__name__: c.state_dict() for c in self.callbacks}
        return {
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "metrics": self.callback_metrics,
            "callbacks": {k: v for k, v in callbacks.items() if v},
            "datamodule": self.datamodule_state,
        }

    def _setup(self, model: TreeModel) -> None:
        if self.default_root_dir is None:  # the training layer claims run folders; the trainer only writes
            raise ConfigError("TreeTrainer needs default_root_dir, the run folder it writes into")
        model.device = self.device

    def fit(self, model: TreeModel, datamodule: SplitData, ckpt_path: str | Path | None = None) -> None:
        """Boost until ``max_epochs`` or a callback sets ``should_stop``; ``ckpt_path`` continues a checkpoint."""
        self._setup(model)
        init_from, state = read_checkpoint(ckpt_path, model) if ckpt_path is not None else (None, {})
        datamodule.load_state_dict(state.get("datamodule") or {}, str(ckpt_path))  # a resume keeps its statistics
        datamodule.setup("fit")
        self.datamodule_state = datamodule.state_dict()
        train = model.split(datamodule.panel("train"), datamodule.ends["train"])
        val = model.split(datamodule.panel("val"), datamodule.ends["val"])
        with native_file(init_from) if init_from is not None else nullcontext():  # a damaged file: one line
            model.start(train, val, init_from)
        self.global_step, self.current_epoch, self.should_stop = model.num_rounds, state.get("epoch", -1) + 1, False
        for callback in self.callbacks:
            callback.load_state_dict(state.get("callbacks", {}).get(type(callback).__name__) or callback.state_dict())
        # a refused monitor fails before any logger writes into the run folder
        check_monitors(self.callbacks, model.score(np.full((len(val.y), NUM_CLASSES), 1 / NUM_CLASSES), val, "val"))
        for logger in self.loggers:
            logger.log_hyperparams({**model.hparams(), "rounds_per_epoch": self.rounds_per_epoch})
        if self.enable_model_summary:
            console.say(f"{model.name} on {self.device}: train/val {len(train.y)}/{len(val.y)} rows x "
                        f"{train.X.shape[1]} columns, from round {model.num_rounds}\n  {model.library_params()}")
        del train  # the library holds its own copy
        self.trigger("on_fit_start", model)
        while self.current_epoch < self.max_epochs and not self.should_stop:
            model.boost(self.rounds_per_epoch)
            if model.num_rounds == self.global_step:  # LightGBM stops adding trees once no split is allowed
                # not an error: no split is allowed any more (e.g. min_data_in_leaf on few rows); say it plainly
                console.say(f"{model.name} added no tree in epoch {self.current_epoch} (no split passes its limits, "
                            f"e.g. min_data_in_leaf): training stops at {model.num_rounds} "
                            f"round{'' if model.num_rounds == 1 else 's'}")
                break
            self.global_step = model.num_rounds
            self.callback_metrics = model.score(model.val_proba(), val, "val")
            self.log_metrics({**self.callback_metrics, "epoch": self.current_epoch})
            self.trigger("on_epoch_end", model)
            self.current_epoch += 1
        self.trigger("on_fit_end", model)
        self._finalize()

    def _run_split(self, model: TreeModel, datamodule: SplitData, split: str, ckpt_path: str | Path | None):
        self._setup(model)
        self.ckpt_path = ckpt_path  # the checkpoint these metrics come from, as Lightning's Trainer records it
        self.temperature = 1.0  # the weights in memory were never calibrated
        if ckpt_path is not None:
            model_file, state = read_checkpoint(ckpt_path, model)
            with native_file(model_file):
                model.load(model_file)
            datamodule.load_state_dict(state.get("datamodule") or {}, str(ckpt_path))  # never a refit
            self.global_step = state.get("global_step", model.num_rounds)
            self.temperature = sidecar_temperature(state, ckpt_path)
        if model.num_rounds == 0:
            raise ConfigError("no trained tree model to evaluate: fit one, or pass ckpt_path")
        datamodule.setup(_SETUP_STAGE.get(split, "predict"))
        data = model.split(datamodule.panel(split), datamodule.ends[split])
        # temperature-scaled as the checkpoint says; the arg-max stays the model's own (``calibrate_probs``)
        return data, calibrate_probs(model.predict_proba(data.X), self.temperature)

    def _evaluate(self, model: TreeModel, datamodule: SplitData, split: str, ckpt_path) -> dict[str, float]:
        data, probs = self._run_split(model, datamodule, split, ckpt_path)
        metrics = model.score(probs, data, split)
        self.log_metrics(metrics)
        self.trigger("on_evaluate_end", model, split, data, probs, metrics)
        self._finalize()
        return metrics

    def validate(self, model: TreeModel, datamodule: SplitData, ckpt_path: str | Path | None = None) -> dict:
        """Metrics (``val/...``) of the model, or of the checkpoint at ``ckpt_path``, on the val split."""
        return self._evaluate(model, datamodule, "val", ckpt_path)

    def test(self, model: TreeModel, datamodule: SplitData, ckpt_path: str | Path | None = None) -> dict:
        """Metrics (``test/...``) of the model, or of the checkpoint at ``ckpt_path``, on the test split."""
        return self._evaluate(model, datamodule, "test", ckpt_path)

    def predict(
        self, model: TreeModel, datamodule: SplitData, ckpt_path: str | Path | None = None
    ) -> np.ndarray:
        """(N, 3) class probabilities on ``data.predict_split``, written to ``predictions/predict.parquet``."""
        data, probs = self._run_split(model, datamodule, datamodule.predict_split, ckpt_path)
        self.trigger("on_evaluate_end", model, "predict", data, probs, {})
        self._finalize()
        return probs

    def _finalize(self) -> None:
        for logger in self.loggers:
            logger.finalize("success")
