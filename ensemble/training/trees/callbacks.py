"""Callbacks of ``TreeTrainer``, with the settings (and meaning) of Lightning's namesakes.

The trainer calls a callback's method when the event of that name fires; state that must survive a
resume goes through ``state_dict``/``load_state_dict`` into the checkpoint sidecar.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ensemble import console
from ensemble.errors import ConfigError
from ensemble.models.trees.base import TreeModel, TreeSplit
from ensemble.training.artifacts import predictions_frame, write_importance, write_stage
from ensemble.training.config import check_monitor_mode
from ensemble.training.trees.checkpoint import clean_checkpoints, commit_checkpoint, stage_checkpoint

if TYPE_CHECKING:
    from ensemble.training.trees.trainer import TreeTrainer


class TreeCallback:
    """Events: ``on_fit_start``, ``on_epoch_end``, ``on_fit_end`` (trainer, model) and
    ``on_evaluate_end`` (trainer, model, stage, data, probs, metrics)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def check_monitors(callbacks: list[TreeCallback], metrics: dict[str, float]) -> None:
    """Fail before the first round, not after it, on a callback that watches a metric that does not exist, or
    a suite metric in the wrong mode (``check_monitor_mode``).

    Raises:
        ConfigError: naming the callback, its monitor and the metrics there are (or the mode to set).
    """
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if monitor is not None and monitor not in metrics:
            raise ConfigError(
                f"{type(callback).__name__} monitor '{monitor}' is not a metric; use one of {sorted(metrics)}"
            )
        check_monitor_mode(monitor, getattr(callback, "mode", None), type(callback).__name__)


def _improves(current: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if not math.isfinite(current):
        return False
    if best is None:
        return True
    return current - min_delta > best if mode == "max" else current + min_delta < best


class EarlyStopping(TreeCallback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs (chunks).

    With ``rounds_per_epoch: 1`` and ``monitor: val/log_loss`` it stops on the same round as the library's
    own ``early_stopping_rounds=patience`` (tested). Otherwise it differs on purpose: it watches any suite
    metric (``val/f1_macro``, ``val/sharpe``, ...) and only at chunk ends.
    """

    def __init__(
        self,
        monitor: str = "val/log_loss",
        min_delta: float = 0.0,
        patience: int = 3,
        mode: Literal["min", "max"] = "min",
    ) -> None:
        self.monitor, self.min_delta, self.patience, self.mode = monitor, abs(min_delta), patience, mode
        self.wait_count, self.best_score, self.stopped_epoch = 0, None, None

    def on_epoch_end(self, trainer: TreeTrainer, model: TreeModel) -> None:
        current = trainer.callback_metrics[self.monitor]
        if _improves(current, self.best_score, self.mode, self.min_delta):
            self.best_score, self.wait_count = current, 0
            return
        self.wait_count += 1
        if self.wait_count >= self.patience or not math.isfinite(current):
            trainer.should_stop, self.stopped_epoch = True, trainer.current_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"wait_count": self.wait_count, "best_score": self.best_score, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait_count, self.best_score = state["wait_count"], state["best_score"]
        self.stopped_epoch = state["stopped_epoch"]


class ModelCheckpoint(TreeCallback):
    """``checkpoints/best.*`` when ``monitor`` improves, ``checkpoints/last.*`` after every epoch.

    Boosting is additive, so at an improving epoch the best model is the current one: it is serialised
    once (as ``last``) and copied to ``best``. ``best`` commits first: a kill in between leaves ``last`` one
    epoch back, and the resumed run redoes that epoch and its ``best``.
    """

    def __init__(
        self, monitor: str | None = "val/log_loss", mode: Literal["min", "max"] = "min", save_last: bool = True
    ) -> None:
        self.monitor, self.mode, self.save_last = monitor, mode, save_last
        self.best_model_score: float | None = None
        self.best_round: int | None = None
        self.best_model_path = ""

    def on_fit_start(self, trainer: TreeTrainer, model: TreeModel) -> None:
        clean_checkpoints(trainer.log_dir / "checkpoints")  # what a killed run left half-written

    def on_epoch_end(self, trainer: TreeTrainer, model: TreeModel) -> None:
        ckpt_dir = trainer.log_dir / "checkpoints"
        current = trainer.callback_metrics[self.monitor] if self.monitor else None
        improved = current is None or _improves(current, self.best_model_score, self.mode)
        if improved:
            self.best_model_score, self.best_round = current, model.num_rounds
        last = stage_checkpoint(model, ckpt_dir, "last") if self.save_last else None
        if improved:
            best = stage_checkpoint(model, ckpt_dir, "best", copy_of=last)
            self.best_model_path = str(commit_checkpoint(model, best, trainer.checkpoint_state()))
        if last is not None:
            commit_checkpoint(model, last, trainer.checkpoint_state())

    def state_dict(self) -> dict[str, Any]:
        return {"best_model_score": self.best_model_score, "best_round": self.best_round, "monitor": self.monitor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_model_score, self.best_round = state["best_model_score"], state["best_round"]


class ProgressBar(TreeCallback):
    """A tqdm bar over boosting rounds on a terminal (unless ``bar`` is False); elsewhere (CI, a log file, an
    experiment cell) one line per epoch, as nets print, so logs hold progress without a redrawn bar. Neither
    with ``--quiet`` or in a tuning trial.

    Args:
        bar: allow the bar (``trainer.enable_progress_bar``); False keeps the line per epoch.
    """

    def __init__(self, bar: bool = True) -> None:
        self.bar_allowed = bar
        self._bar: Any = None

    def on_fit_start(self, trainer: TreeTrainer, model: TreeModel) -> None:
        if self.bar_allowed and sys.stderr.isatty() and console.level() >= console.NORMAL:
            from tqdm import tqdm

            self._bar = tqdm(total=trainer.max_epochs * trainer.rounds_per_epoch, initial=trainer.global_step,
                             unit="round", desc=f"{model.name} epoch {trainer.current_epoch}")  # fmt: skip

    def on_epoch_end(self, trainer: TreeTrainer, model: TreeModel) -> None:
        f1 = trainer.callback_metrics["val/f1_macro"]
        if self._bar is None:
            console.say(f"{model.name} epoch {trainer.current_epoch}: {model.num_rounds} rounds, val/f1_macro {f1:.4f}")
            return
        self._bar.update(model.num_rounds - self._bar.n)
        self._bar.set_description(f"{model.name} epoch {trainer.current_epoch}")
        self._bar.set_postfix({"val/f1_macro": f"{f1:.4f}"})

    def on_fit_end(self, trainer: TreeTrainer, model: TreeModel) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ArtifactWriter(TreeCallback):
    """After every evaluation: predictions, metrics.json and plots via the nets' ``write_stage``;
    plus the evaluated model's feature importance as CSV and PNG, once per model."""

    def __init__(self) -> None:
        self._importance_of: tuple[int, int] | None = None

    def on_evaluate_end(
        self, trainer: TreeTrainer, model: TreeModel, stage: str, data: TreeSplit, probs: np.ndarray, metrics: dict
    ) -> None:
        parts = {"probs": probs, "y": data.y, "time": data.time, "symbol": data.symbol, "fwd_return": data.fwd_return}
        df = predictions_frame(parts, data.symbols, tz=data.tz)
        write_stage(trainer.log_dir, stage, df, metrics, model.horizon, trainer.loggers, trainer.global_step,
                    trainer.ckpt_path, trading=model.trading_config, model=model.name,
                    temperature=trainer.temperature)  # fmt: skip
        if self._importance_of != (id(model), model.num_rounds):
            self._importance_of = (id(model), model.num_rounds)
            importance = model.feature_importance().sort_values(ascending=False)
            kind = model.importance_type
            title = (f"{model.name} h={model.horizon}, train: feature importance by {kind} "
                     f"({model.num_rounds} rounds)")  # measured on the trees grown from the train split
            write_importance(trainer.log_dir / "plots", importance, "importance", title, trainer.loggers,
                             trainer.global_step, xlabel=f"{kind} (share of the total, sums to 1)")
