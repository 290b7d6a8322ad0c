"""``Classifier``: one LightningModule for every neural backbone.

It owns the loss, the optimizer and scheduler, and the metric suite; the backbone only maps
(B, L, F) windows to (B, 3) logits.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn
from torchmetrics import MeanMetric

from ensemble.data.constants import NUM_CLASSES
from ensemble.errors import ConfigError, NonFiniteLossError
from ensemble.metrics import MetricSuite, TradingConfig
from ensemble.metrics.calibration import calibrate_logits
from ensemble.models.checks import check_checkpoint_matches

EVAL_STAGES = ("val", "test")


class Classifier(pl.LightningModule):
    """3-class (short/flat/long) classifier over symbol windows.

    Args:
        net: the backbone, (B, L, F) -> (B, 3) logits.
        horizon, bars_per_year, feature_names: linked from the data (``bars_per_year``: inferred from its
            timestamps); stored in every checkpoint.
        trading: the config's ``trading:`` section as a dict (see ``TradingConfig``), linked from it: costs,
            sizing, book and benchmark of the trading metrics; its ``bars_per_year``, when set, wins.
        class_weights: optional cross-entropy weights for short/flat/long.
        label_smoothing: cross-entropy label smoothing.
        use_sample_weights: weight each sample's loss by ``sample_weight_h{H}``.
        optimizer, scheduler: LightningCLI-style callables (``class_path`` + ``init_args`` in config).
        monitor: the metric a plateau scheduler watches.
    """

    def __init__(
        self,
        net: nn.Module,
        horizon: int = 5,
        bars_per_year: float | None = None,
        feature_names: list[str] | None = None,
        trading: dict[str, Any] | None = None,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        use_sample_weights: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        # Under the CLI the hyperparameters are the config (net, optimizer as class_path dicts), which
        # lets load_from_checkpoint rebuild the model with weights_only=True; built by hand, the net is
        # a module object that the state dict already holds.
        from_config = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if from_config else ["net", "optimizer", "scheduler"])
        self.net = net
        if feature_names is not None and hasattr(net, "bind_feature_names"):
            net.bind_feature_names(feature_names)  # a backbone that reads columns by name (TimesFM's context)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if class_weights is not None and len(class_weights) != NUM_CLASSES:
            raise ConfigError(f"model.class_weights needs 3 values (short, flat, long), got {class_weights}")
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )
        self.trading_config = TradingConfig.from_mapping(trading)
        self.metrics = nn.ModuleDict(
            {s: MetricSuite(s, horizon, bars_per_year, self.trading_config) for s in EVAL_STAGES}
        )
        self.losses = nn.ModuleDict({s: MeanMetric() for s in EVAL_STAGES})
        # temperature scaling of the evaluated probabilities (Guo et al. 2017): 1 while training; a checkpoint's
        # ``calibration`` entry sets it when an evaluation or ``predict`` loads one (``on_load_checkpoint``)
        self.temperature = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, L, F) -> (B, 3)

    def _loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = F.cross_entropy(
            logits.float(),
            batch["y"],
            weight=self.class_weights,
            label_smoothing=self.hparams.label_smoothing,
            reduction="none",
        )
        if self.hparams.use_sample_weights:
            w = batch["weight"]
            return (loss * w).sum() / w.sum().clamp_min(1e-12)
        return loss.mean()

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        logits = self(batch["x"])
        loss = self._loss(logits, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite {stage} loss ({loss.item()}) at epoch {self.current_epoch}, "
                f"global step {self.global_step}; lower the learning rate or check the features"
            )
        probs = self.probabilities(logits) if stage in EVAL_STAGES else logits.float().softmax(dim=-1)
        if stage in EVAL_STAGES:
            self.losses[stage].update(loss.detach(), weight=batch["y"].shape[0])
            self.metrics[stage].update(probs, batch["y"], batch["time"], batch["fwd_return"],
                                       symbol=batch["symbol"])
        return {"loss": loss, "probs": probs.detach()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._common_step(batch, "train")
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=batch["y"].shape[0])
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._common_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._common_step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return {"probs": self.probabilities(self(batch["x"]))}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 3) logits -> (B, 3) float32 class probabilities at the model's temperature; the arg-max is the
        uncalibrated one, bit for bit (``calibrate_logits``)."""
        return calibrate_logits(logits, self.temperature)

    def _log_epoch(self, stage: str) -> None:
        # torchmetrics has already synced the states, so every rank holds the same values; sync_dist
        # then only averages identical numbers (and keeps Lightning from warning under DDP)
        values = {f"{stage}/loss": self.losses[stage].compute().item(), **self.metrics[stage].compute()}
        headline = f"{stage}/f1_macro"
        self.log(headline, values.pop(headline), prog_bar=True, sync_dist=True)
        self.log_dict(values, prog_bar=False, sync_dist=True)
        self.losses[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self.metrics["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.metrics["test"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # dropout draws from the global generator: keep it so a resumed run matches an uninterrupted one
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_matches(checkpoint.get("hyper_parameters", {}), self.hparams)
        trainer = self._trainer  # None when loaded outside a Trainer (load_from_checkpoint)
        # training (and a resumed fit) is never calibrated: early stopping watches the model's own probabilities
        fitting = trainer is not None and trainer.state.fn == "fit"
        self.temperature = 1.0 if fitting else checkpoint_temperature(checkpoint)
        if "torch_rng_state" in checkpoint and trainer is not None and trainer.state.fn == "fit":
            torch.set_rng_state(checkpoint["torch_rng_state"])


def checkpoint_temperature(checkpoint: dict[str, Any]) -> float:
    """The temperature a net checkpoint carries (``checkpoint["calibration"]["temperature"]``); 1.0 for one
    written before calibration existed, or by ``fit --calibrate false``.

    Raises:
        CalibrationInputError: an entry that is not a finite number > 0 (a damaged or hand-edited file).
    """
    from ensemble.metrics.calibration import checked_temperature

    entry = checkpoint.get("calibration") or {}
    return checked_temperature(entry.get("temperature", 1.0) if isinstance(entry, dict) else entry, "checkpoint")
