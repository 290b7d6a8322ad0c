"""The net loss options (`class_weights`, `label_smoothing`, `use_sample_weights`) against the cross-entropy
written out by hand, and against ``F.cross_entropy`` where the two conventions coincide.

The convention pinned here (``Classifier`` docstring): each sample's loss is PyTorch's per-sample
cross-entropy, ``w[y] * ((1 - e) * -log p[y] + e / C * sum_c -log p[c])`` with class weights ``w`` applied
inside the smoothing term as PyTorch does; the batch loss is the plain mean over samples, or, with
``use_sample_weights``, ``sum(s_i * loss_i) / sum(s_i)``.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemble.models import Classifier

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, -2.0, 0.5]])
Y = torch.tensor([0, 2, 1, 2])
SAMPLE_W = torch.tensor([1.0, 0.5, 2.0, 0.25])


class FixedLogits(nn.Module):
    """A backbone whose output is LOGITS, whatever the window: (B, L, F) -> (B, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LOGITS[: x.shape[0]].clone()


def _batch() -> dict[str, torch.Tensor]:
    n = len(Y)
    return {"x": torch.zeros(n, 2, 4), "y": Y, "weight": SAMPLE_W, "time": torch.arange(n),
            "fwd_return": torch.zeros(n), "symbol": torch.zeros(n, dtype=torch.long), "row": torch.arange(n)}


def _by_hand(class_weights=(1.0, 1.0, 1.0), smoothing=0.0, sample_weights=None) -> float:
    total, norm = 0.0, 0.0
    for i in range(len(Y)):
        z = LOGITS[i].tolist()
        log_z = math.log(sum(math.exp(v) for v in z))
        nll = [log_z - v for v in z]  # -log softmax, class by class
        y = int(Y[i])
        loss = class_weights[y] * (1 - smoothing) * nll[y] + smoothing / 3 * sum(
            class_weights[c] * nll[c] for c in range(3))
        s = 1.0 if sample_weights is None else float(sample_weights[i])
        total, norm = total + s * loss, norm + s
    return total / norm


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, _by_hand()),
        ({"class_weights": [2.0, 1.0, 0.5]}, _by_hand(class_weights=(2.0, 1.0, 0.5))),
        ({"label_smoothing": 0.2}, _by_hand(smoothing=0.2)),
        ({"use_sample_weights": True}, _by_hand(sample_weights=SAMPLE_W)),
        ({"class_weights": [2.0, 1.0, 0.5], "label_smoothing": 0.1, "use_sample_weights": True},
         _by_hand(class_weights=(2.0, 1.0, 0.5), smoothing=0.1, sample_weights=SAMPLE_W)),
    ],
)
def test_loss_options_match_the_hand_computed_cross_entropy(options, expected):
    model = Classifier(net=FixedLogits(), **options)
    loss = model.validation_step(_batch(), 0)["loss"]
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_plain_and_smoothed_losses_are_pytorchs_cross_entropy():
    for smoothing in (0.0, 0.3):
        model = Classifier(net=FixedLogits(), label_smoothing=smoothing)
        got = model.validation_step(_batch(), 0)["loss"]
        torch.testing.assert_close(got, F.cross_entropy(LOGITS, Y, label_smoothing=smoothing))


def test_class_weights_are_a_per_sample_mean_not_pytorchs_weighted_mean():
    """PyTorch's reduction='mean' divides by sum(w[y]); ours by the number of samples. Pinned so a switch
    between the two (which rescales the loss per batch by its class mix) cannot pass unnoticed."""
    w = torch.tensor([3.0, 1.0, 0.5])  # sum of w[y] over the batch is 5, not the 4 samples
    got = Classifier(net=FixedLogits(), class_weights=w.tolist()).validation_step(_batch(), 0)["loss"]
    torch.testing.assert_close(got, F.cross_entropy(LOGITS, Y, weight=w, reduction="sum") / len(Y))
    assert abs(got.item() - F.cross_entropy(LOGITS, Y, weight=w).item()) > 1e-3


def test_class_weights_need_three_values():
    with pytest.raises(ValueError, match=r"model.class_weights needs 3 values \(short, flat, long\), got \[1.0, 2.0\]"):
        Classifier(net=FixedLogits(), class_weights=[1.0, 2.0])
