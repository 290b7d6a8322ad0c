"""Feature importance from a backbone's variable-selection weights (TFT), as a table and a plot.

Generic: it acts only when ``pl_module.net`` has a ``variable_weights`` attribute, the (B, F)
per-sample selection weights of its last forward; every other backbone is left alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ensemble.io import atomic_write, write_figure
from ensemble.training.artifacts import log_figure, log_file
from ensemble.training.plots import feature_importance_figure

CSV = "feature_importance.csv"
PNG = "feature_importance.png"


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
        self._write(Path(trainer.log_dir or trainer.default_root_dir) / "plots", split, importance, trainer)

    def _write(self, plots: Path, split: str, importance: pd.Series, trainer: Trainer) -> None:
        import matplotlib.pyplot as plt

        csv_path = plots / CSV
        table = pd.DataFrame(index=importance.index)
        if csv_path.exists():  # keep the other split's column from the same run
            before = pd.read_csv(csv_path, index_col="feature")
            if set(before.index) == set(importance.index):
                table = before.reindex(importance.index)
        table[split] = importance
        table = table.sort_values(split, ascending=False)
        atomic_write(csv_path, lambda p: table.to_csv(p, index_label="feature"))
        log_file(trainer.loggers, csv_path, "plots")
        fig = feature_importance_figure(importance, f"mean variable-selection weight ({split})", top=self.top)
        png_path = write_figure(plots / PNG, fig)
        log_figure(trainer.loggers, fig, f"{split}/feature_importance", png_path, trainer.global_step)
        plt.close(fig)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, pl_module)
