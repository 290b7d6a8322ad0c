"""Optuna pruning for tree runs: report the monitored val metric after every epoch (chunk of rounds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from ensemble.models.trees.base import TreeModel
from ensemble.training.trees.callbacks import TreeCallback

if TYPE_CHECKING:
    from ensemble.training.trees.trainer import TreeTrainer


class TreePruningCallback(TreeCallback):
    """``optuna_integration``'s Lightning pruning callback, for ``TreeTrainer``: the step is the epoch."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, trainer: TreeTrainer, model: TreeModel) -> None:
        epoch = trainer.current_epoch
        self.trial.report(trainer.callback_metrics[self.monitor], step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch {epoch} ({model.num_rounds} rounds)")
