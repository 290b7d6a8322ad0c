"""The nets' Lightning callbacks: ``ArtifactWriter`` (predictions, metrics.json, plots of every evaluation)
and ``FeatureImportance`` (a backbone's variable-selection weights, TFT's, as a table and a plot).

Both write through ``training/artifacts.py``, the writers trees and blends use too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from ensemble import console
from ensemble.training.artifacts import predictions_frame, write_importance, write_stage

_STAGE_SPLIT = {"validate": "val", "test": "test", "predict": "predict"}


class ArtifactWriter(Callback):
    """Collects predictions in ``validate``/``test``/``predict`` runs and writes the run's artifacts.

    During ``fit`` it stays out of the way: the CLI evaluates the best checkpoint afterwards.
    """

    def __init__(self) -> None:
        self._parts: list[dict[str, torch.Tensor]] = []
        self.partial: dict[str, bool] = {}  # split -> evaluated on part of its batches (limit_*_batches)

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
        if stage_name != "predict":
            self.partial[split] = partial_evaluation(trainer, split)
        panel = dm.panel(split)
        df = predictions_frame(parts, panel.symbols, tz=panel.tz)
        write_stage(run_dir, stage_name, df, metrics, dm.horizon, trainer.loggers, trainer.global_step,
                    trainer.ckpt_path, trading=getattr(pl_module, "trading_config", None),
                    partial=self.partial.get(split, False), model=_model_name(pl_module),
                    temperature=getattr(pl_module, "temperature", None))  # fmt: skip

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)


def partial_evaluation(trainer: Trainer, split: str) -> bool:
    """Whether the running ``validate``/``test`` sees fewer batches than its loaders hold
    (``trainer.limit_val_batches`` / ``limit_test_batches`` below the whole split)."""
    evaluated = trainer.num_val_batches if split == "val" else trainer.num_test_batches
    loaders = trainer.val_dataloaders if split == "val" else trainer.test_dataloaders
    loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
    return sum(evaluated) < sum(len(loader) for loader in loaders)


class FeatureImportance(Callback):
    """In ``validate``/``test`` runs (not during ``fit``), average the per-feature selection weights
    over every evaluated sample and write ``plots/feature_importance.csv`` (one column per evaluated
    split) and ``plots/feature_importance.png`` (the split evaluated last), logged like other plots.

    Args:
        top: how many features the plot shows.
    """

    def __init__(self, top: int = 30) -> None:
        self.top = top
        self._sum: torch.Tensor | None = None
        self._count = 0

    @staticmethod
    def _applies(trainer: Trainer, pl_module: LightningModule) -> bool:
        return (
            trainer.state.fn in ("validate", "test")
            and not trainer.sanity_checking
            and hasattr(getattr(pl_module, "net", None), "variable_weights")
        )

    def _reset(self) -> None:
        self._sum, self._count = None, 0

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset()

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset()

    def _collect(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._applies(trainer, pl_module):
            return
        weights = pl_module.net.variable_weights.detach().float()  # (B, F), this batch's forward
        total = weights.sum(dim=0)
        self._sum = total if self._sum is None else self._sum + total
        self._count += weights.shape[0]

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module)

    def _finish(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._applies(trainer, pl_module):
            return
        names = list(getattr(trainer.datamodule, "feature_names", None) or pl_module.hparams["feature_names"])
        local = torch.zeros(len(names) + 1, device=pl_module.device)  # every rank joins the reduce
        if self._sum is not None:
            local[:-1] += self._sum.to(local.device)
            local[-1] = self._count
        total = trainer.strategy.reduce(local, reduce_op="sum")
        self._reset()
        if not trainer.is_global_zero or total[-1] == 0:
            return
        split = "val" if trainer.state.fn == "validate" else "test"
        importance = pd.Series((total[:-1] / total[-1]).cpu().numpy(), index=pd.Index(names, name="feature"))
        plots = Path(trainer.log_dir or trainer.default_root_dir) / "plots"
        model = type(pl_module.net).__name__
        title = f"{model} h={pl_module.hparams['horizon']}, {split}: feature importance by variable selection"
        write_importance(plots, importance, split, title, trainer.loggers, trainer.global_step, top=self.top,
                         xlabel=f"mean variable-selection weight over {split} windows (0 to 1, sums to 1)")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)


class PreemptionCheckpoint(Callback):
    """On SIGTERM (a scheduler pre-empting the job) save a resumable ``last.ckpt`` where the run's
    checkpoints go, whatever the epoch, and note its path on the exception (``checkpoint``); Lightning then
    stops and the family layer exits with 143."""

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        callback = trainer.checkpoint_callback
        if isinstance(exception, SIGTERMException) and callback is not None and callback.dirpath:
            saved = Path(callback.dirpath) / "last.ckpt"
            trainer.save_checkpoint(saved)  # every rank calls it: a collective under DDP
            exception.checkpoint = saved


class EpochLine(Callback):
    """One line per epoch (``epoch 3: train/loss 1.0812  val/f1_macro 0.3512``) where no progress bar
    draws: output that is not a terminal (CI, a log file, an experiment cell) gets progress, not redraws.
    Printed at the normal level only (not with ``--quiet``, not in a tuning trial)."""

    KEYS = ("train/loss", "val/loss", "val/f1_macro")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the epoch's validation, so its val metrics are this epoch's
        if trainer.progress_bar_callback is not None or not trainer.is_global_zero:
            return
        shown = "  ".join(f"{k} {float(trainer.callback_metrics[k]):.4f}" for k in self.KEYS
                          if k in trainer.callback_metrics)  # fmt: skip
        console.say(f"epoch {trainer.current_epoch}: {shown}")


def _model_name(pl_module: LightningModule) -> str:
    """The registered name of the module's backbone (``lstm``), for figure titles; else its class in lower case."""
    from ensemble.models.registry import entry_for

    net = getattr(pl_module, "net", pl_module)
    entry = entry_for(f"{type(net).__module__}.{type(net).__qualname__}")
    return entry.name if entry is not None else type(net).__name__.lower()


class LatestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``last.ckpt`` written after every validation.

    Since Lightning 2.x writes ``last.ckpt`` only in a step where a top-k checkpoint was saved, a run whose
    monitor stopped improving kept an old epoch as "last": a crash or SIGTERM then resumed from that old epoch,
    not from where the run stopped. Here ``last`` is always the newest state, as crash-safe resume needs.
    """

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # at the epoch's end (Lightning runs checkpoint callbacks after EarlyStopping), so a resume starts the next
        # epoch; skipped when this step was saved already (a new best writes last too) and outside fitting
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
