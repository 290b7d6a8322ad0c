"""One metric suite for every model family, so nets and trees log identical names."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from ensemble.metrics.classification import CLASS_NAMES, classification_metrics
from ensemble.metrics.trading import trading_metrics


class MetricSuite(torch.nn.Module):
    """Classification and trading metrics of one stage, keyed ``{stage}/{name}``.

    An ``nn.Module`` so it moves with the LightningModule that owns it and its metrics sync under DDP.
    """

    def __init__(self, stage: str, horizon: int, bars_per_year: float = 252.0) -> None:
        super().__init__()
        self.stage = stage
        self.classification = classification_metrics(CLASS_NAMES)
        self.trading = trading_metrics(horizon, bars_per_year)
        self.confmat = MulticlassConfusionMatrix(len(CLASS_NAMES))

    def update(self, probs: Tensor, target: Tensor, time: Tensor, fwd_return: Tensor) -> None:
        """probs: (B, 3) class probabilities; target: (B,) in {0, 1, 2}; time: (B,) int64; fwd_return: (B,)."""
        probs, target = probs.detach(), target.detach()
        self.classification.update(probs, target)
        self.confmat.update(probs, target)
        position = probs.argmax(dim=1) - 1  # class 0/1/2 -> short/flat/long = -1/0/+1
        self.trading.update(time, position, fwd_return.detach())

    def compute(self) -> dict[str, float]:
        results = {**self.classification.compute(), **self.trading.compute()}
        return {f"{self.stage}/{name}": float(value) for name, value in results.items()}

    def confusion_matrix(self) -> Tensor:
        """(3, 3) counts; rows are true classes, columns predicted ones."""
        return self.confmat.compute()

    def reset(self) -> None:
        self.classification.reset()
        self.trading.reset()
        self.confmat.reset()
