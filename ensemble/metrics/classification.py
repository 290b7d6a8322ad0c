"""Classification metrics for the 3-class (short, flat, long) problem."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
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


class BrierScore(Metric):
    """Multiclass Brier score (Brier 1950): mean over rows of sum over classes of (p_c - 1[y = c])^2.

    In [0, 2]; 0 for sure and right, 2 for sure and wrong, 2/3 for uniform probabilities over 3 classes.
    Sums and counts are summed across processes, so the result under DDP equals the one over all rows.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("sq_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("rows", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) class probabilities; target: (B,) class indices."""
        p = preds.double()  # a half-precision square of a small difference would round to 0
        # sum_c (p_c - 1[y = c])^2 = sum_c p_c^2 - 2 p_y + 1, without building the one-hot matrix
        p_true = torch.take_along_dim(p, target.long()[:, None], dim=1)
        self.sq_sum += (p * p).sum() - 2 * p_true.sum() + target.numel()
        self.rows += target.numel()

    def compute(self) -> Tensor:
        if self.rows == 0:
            return torch.zeros((), device=self.sq_sum.device)
        return (self.sq_sum / self.rows).float()


class ExpectedCalibrationError(MulticlassCalibrationError):
    """torchmetrics' top-label calibration error, fed probabilities clamped to [0, 1].

    torchmetrics reads a batch holding any value outside [0, 1] as logits and softmaxes the whole batch;
    a probability one rounding step above 1 (a blend's weighted mean) must not turn the ECE into nonsense.
    No rows give 0, as every metric of the suite, rather than torchmetrics' error.
    """

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) class probabilities; target: (B,) class indices."""
        super().update(preds.float().clamp(0.0, 1.0), target)

    def compute(self) -> Tensor:
        rows = self.confidences if isinstance(self.confidences, list) else [self.confidences]
        if sum(r.numel() for r in rows) == 0:  # none here, or none on any rank after a sync
            return torch.zeros((), device=self.device)
        return super().compute()


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
    """Accuracy, balanced accuracy, macro F1, per-class precision/recall/F1, log loss, ECE and Brier score.

    Every metric takes ``update(probs (B, C), target (B,))``; per-class scores come out as flat scalars
    named ``precision_short``, ``recall_flat``, ``f1_long``, ...

    ``ece``: expected calibration error of the top label (Guo et al. 2017, eq. 3) with 15 equal-width
    confidence bins and the L1 norm, sum over bins of (rows in bin / N) |accuracy - mean confidence|;
    torchmetrics' ``MulticlassCalibrationError`` via ``ExpectedCalibrationError`` (bins [k/15, (k+1)/15),
    a confidence of exactly 1 in its own last bin; per-row confidences are gathered across processes).
    ``brier``: ``BrierScore``.
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
            "ece": ExpectedCalibrationError(n, n_bins=15, norm="l1"),
            "brier": BrierScore(),
        },
        # No compute groups: a ClasswiseWrapper in one keeps a stale cached result after later updates
        # (torchmetrics 1.9 invalidates the wrapper's cache, not the wrapped metric's), and no two plain
        # metrics here share state since balanced accuracy has its own.
        compute_groups=False,
    )
