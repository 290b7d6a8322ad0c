"""Classification metrics for the 3-class (short, flat, long) problem."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.wrappers import ClasswiseWrapper

CLASS_NAMES: tuple[str, ...] = ("short", "flat", "long")


class LogLoss(Metric):
    """Mean negative log-likelihood of the true class: mean(-log p[y]), p clamped to [eps, 1]."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eps: float = 1e-7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = eps
        self.add_state("nll_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) class probabilities; target: (B,) class indices."""
        # Upcast first: under mixed precision probs may arrive as half and log of a half underflows.
        p = preds.float().gather(1, target.long().unsqueeze(1)).squeeze(1).clamp(self.eps, 1.0)
        self.nll_sum += -p.log().sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            return torch.zeros((), device=self.nll_sum.device)
        return self.nll_sum / self.count


class BalancedAccuracy(Metric):
    """Mean recall over the classes present in the target, as scikit-learn's ``balanced_accuracy_score``.

    A class with no true rows has no recall: it is left out of the mean rather than counted as 0 (which
    is what torchmetrics' macro recall does for a class that is predicted but absent). Per-class counts
    are summed across processes, so the result under DDP equals the one over all rows.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("hits", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("support", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) class probabilities (or scores); target: (B,) class indices."""
        target = target.long()
        hit = preds.argmax(dim=1) == target
        self.support += torch.bincount(target, minlength=self.num_classes)
        self.hits += torch.bincount(target[hit], minlength=self.num_classes)

    def compute(self) -> Tensor:
        present = self.support > 0
        if not present.any():
            return torch.zeros((), device=self.hits.device)
        return (self.hits[present].double() / self.support[present]).mean().float()


def classification_metrics(class_names: tuple[str, ...] = CLASS_NAMES) -> MetricCollection:
    """Accuracy, balanced accuracy, macro F1, per-class precision/recall/F1 and log loss.

    Every metric takes ``update(probs (B, C), target (B,))``; per-class scores come out as flat scalars
    named ``precision_short``, ``recall_flat``, ``f1_long``, ...
    """
    n = len(class_names)
    labels = list(class_names)

    def per_class(metric: Metric, name: str) -> ClasswiseWrapper:
        return ClasswiseWrapper(metric, labels=labels, prefix=f"{name}_")

    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(n, average="micro"),
            "balanced_accuracy": BalancedAccuracy(n),
            "f1_macro": MulticlassF1Score(n, average="macro"),
            "precision": per_class(MulticlassPrecision(n, average=None), "precision"),
            "recall": per_class(MulticlassRecall(n, average=None), "recall"),
            "f1": per_class(MulticlassF1Score(n, average=None), "f1"),
            "log_loss": LogLoss(),
        },
        # No compute groups: a ClasswiseWrapper in one keeps a stale cached result after later updates
        # (torchmetrics 1.9 invalidates the wrapper's cache, not the wrapped metric's), and no two plain
        # metrics here share state since balanced accuracy has its own.
        compute_groups=False,
    )
