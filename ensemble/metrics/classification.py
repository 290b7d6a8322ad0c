"""Classification metrics for the 3-class (short, flat, long) problem."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

CLASS_NAMES: tuple[str, ...] = ("short", "flat", "long")


def nll_sum(probs: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """float64 sum over rows of -log p[y], p clamped to [eps, 1]. probs: (B, C); target: (B,) class ids."""
    # float64 first: under mixed precision probs may arrive as half, and the log of a half underflows
    return -probs.double().gather(1, target.long()[:, None]).clamp(eps, 1.0).log().sum()


def brier_sum(probs: Tensor, target: Tensor) -> Tensor:
    """float64 sum over rows of sum_c (p_c - 1[y = c])^2. probs: (B, C); target: (B,) class ids."""
    p = probs.double()  # a half-precision square of a small difference would round to 0
    # sum_c (p_c - 1[y = c])^2 = sum_c p_c^2 - 2 p_y + 1, without building the one-hot matrix
    return (p * p).sum() - 2 * torch.take_along_dim(p, target.long()[:, None], dim=1).sum() + target.numel()


class LogLoss(Metric):
    """Mean negative log-likelihood of the true class: mean(-log p[y]), p clamped to [eps, 1]."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eps: float = 1e-7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = eps
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) class probabilities; target: (B,) class indices."""
        self.nll_sum += nll_sum(preds, target, self.eps)
        self.count += target.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            return torch.zeros((), device=self.nll_sum.device)
        return (self.nll_sum / self.count).float()


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
        self.sq_sum += brier_sum(preds, target)
        self.rows += target.numel()

    def compute(self) -> Tensor:
        if self.rows == 0:
            return torch.zeros((), device=self.sq_sum.device)
        return (self.sq_sum / self.rows).float()


class ClassificationMetrics(Metric):
    """Every classification metric of the suite, from one set of counts and sums.

    ``update(probs (B, C), target (B,))`` adds to a (C, C) confusion matrix (rows true, columns the arg-max), the
    log-loss and Brier sums and the calibration bins; ``compute()`` returns ``{name: 0-d tensor}`` for
    ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``precision_<class>``, ``recall_<class>``,
    ``f1_<class>``, ``log_loss``, ``ece`` and ``brier`` (``names``). Every state is a sum, so the result under
    DDP equals the one over all rows; no rows give 0 for every metric.

    One metric rather than a collection of torchmetrics' own: those cost 4x more per evaluation (9.5 ms against
    2.3 on the demo's test split, docs/benchmarks.md), mostly in building nine metrics over the same arg-max, and
    give the same numbers (tests/test_classification_reference.py checks each against them):

    - precision, recall, F1 per class as torchmetrics' ``average=None`` with a 0 for a zero denominator;
      ``f1_macro`` as its ``average="macro"``: the mean over the classes that were true or predicted at least
      once; ``accuracy`` the share of rows whose arg-max is the target;
    - ``balanced_accuracy``: mean recall over the classes present in the target (scikit-learn's
      ``balanced_accuracy_score``);
    - ``log_loss``: mean -log p[y], p clamped to [1e-7, 1]; ``brier``: the multiclass Brier score (Brier 1950),
      mean over rows of sum_c (p_c - 1[y = c])^2, in [0, 2];
    - ``ece``: expected calibration error of the top label (Guo et al. 2017, eq. 3), sum over bins of
      (rows in bin / N) |accuracy - mean confidence|, with torchmetrics' bins: ``n_bins`` equal-width bins
      [k/n, (k+1)/n) and a confidence of exactly 1 in a bin of its own. Probabilities are clamped to [0, 1]
      first: a blend's weighted mean can land one rounding step above 1.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, class_names: tuple[str, ...] = CLASS_NAMES, n_bins: int = 15, eps: float = 1e-7,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.class_names, self.eps = tuple(class_names), eps
        c = len(self.class_names)
        self.add_state("confusion", default=torch.zeros(c, c, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("squared", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        # per calibration bin: summed top-label confidence, rows whose top label is right (sum over bins of
        # (rows / N) |hits / rows - confidence / rows| needs no row count)
        self.add_state("bins", default=torch.zeros(2, n_bins + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.edges = torch.linspace(0, 1, n_bins + 1)  # float32, as torchmetrics bins float32 confidences

    @property
    def names(self) -> tuple[str, ...]:
        """The metric names ``compute`` returns, in its order."""
        per_class = [f"{kind}_{name}" for kind in ("precision", "recall", "f1") for name in self.class_names]
        return ("accuracy", "balanced_accuracy", "f1_macro", *per_class, "log_loss", "ece", "brier")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) class probabilities; target: (B,) class indices."""
        c, target, probs = len(self.class_names), target.long(), preds.detach()
        pred = probs.argmax(dim=1)  # the first of tied maxima, as torchmetrics
        confidence = probs.float().clamp(0.0, 1.0).amax(dim=1)
        self.confusion += torch.bincount(target * c + pred, minlength=c * c).view(c, c)
        self.nll += nll_sum(probs, target, self.eps)
        self.squared += brier_sum(probs, target)
        index = torch.bucketize(confidence, self.edges.to(confidence.device), right=True) - 1
        n = self.bins.shape[1]
        self.bins += torch.stack([torch.bincount(index, weights=confidence.double(), minlength=n),
                                  torch.bincount(index, weights=(pred == target).double(), minlength=n)])  # fmt: skip

    def compute(self) -> dict[str, Tensor]:
        cm = self.confusion.double()
        tp, predicted, true = cm.diagonal(), cm.sum(dim=0), cm.sum(dim=1)
        rows = cm.sum()

        def ratio(a: Tensor, b: Tensor) -> Tensor:  # 0 where b is 0, as torchmetrics' zero_division=0
            return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))

        def mean_where(x: Tensor, keep: Tensor) -> Tensor:
            return x[keep].mean() if bool(keep.any()) else torch.zeros((), dtype=x.dtype, device=x.device)

        precision, recall, f1 = ratio(tp, predicted), ratio(tp, true), ratio(2 * tp, predicted + true)
        confidence, hits = self.bins
        values = [ratio(tp.sum(), rows), mean_where(recall, true > 0), mean_where(f1, predicted + true > 0),
                  *precision, *recall, *f1, ratio(self.nll, rows), ratio((hits - confidence).abs().sum(), rows),
                  ratio(self.squared, rows)]  # fmt: skip
        return {name: v.float() for name, v in zip(self.names, values, strict=True)}


def classification_metrics(class_names: tuple[str, ...] = CLASS_NAMES) -> ClassificationMetrics:
    """The suite's classification metrics for ``class_names``: ``ClassificationMetrics``."""
    return ClassificationMetrics(class_names)
