"""Issue 14 item 7: balanced accuracy averages recall over the classes present, as scikit-learn does."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from ensemble.metrics import MetricSuite
from ensemble.metrics.classification import ClassificationMetrics


def _sklearn(target: np.ndarray, pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": the case under test
        return float(balanced_accuracy_score(target, pred))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60),
    batches=st.integers(1, 4),
)
def test_balanced_accuracy_matches_sklearn_absent_classes_included(rows, batches):
    target = np.array([t for t, _ in rows])
    pred = np.array([p for _, p in rows])
    probs = torch.nn.functional.one_hot(torch.tensor(pred), 3).float() * 0.5 + 0.25  # argmax is pred
    metric = ClassificationMetrics()
    for part in np.array_split(np.arange(len(rows)), batches):  # several updates, as batches arrive
        if len(part):
            metric.update(probs[part], torch.tensor(target[part]))
    assert float(metric.compute()["balanced_accuracy"]) == pytest.approx(_sklearn(target, pred), abs=1e-6)


def test_suite_val_balanced_accuracy_with_every_label_long():
    """The reported case: every val label "long"; the score is the recall of "long" alone."""
    g = torch.Generator().manual_seed(0)
    n = 200
    probs = torch.softmax(torch.randn(n, 3, generator=g), dim=1)
    target = torch.full((n,), 2)
    suite = MetricSuite("val", horizon=5)
    suite.update(probs, target, torch.arange(n) * 3_600 * 10**9, torch.randn(n, generator=g) * 0.01,
                 symbol=torch.zeros(n, dtype=torch.long))  # one symbol, one row per timestamp
    got = suite.compute()["val/balanced_accuracy"]
    want = _sklearn(target.numpy(), probs.argmax(1).numpy())
    assert want == pytest.approx(float((probs.argmax(1) == 2).float().mean()))
    assert got == pytest.approx(want, abs=1e-6)


def test_states_merge_as_ranks_sync():
    """Under DDP each state is reduced with its dist_reduce_fx; ``merge_state`` applies the same reduction."""
    g = torch.Generator().manual_seed(1)
    probs, target = torch.randn(90, 3, generator=g), torch.randint(0, 2, (90,), generator=g)  # class 2 absent
    whole, rank0, rank1 = ClassificationMetrics(), ClassificationMetrics(), ClassificationMetrics()
    whole.update(probs, target)
    rank0.update(probs[:37], target[:37])
    rank1.update(probs[37:], target[37:])
    rank0.merge_state(rank1)
    assert rank0.compute() == pytest.approx(whole.compute())  # every metric, not only balanced accuracy
    want = _sklearn(target.numpy(), probs.argmax(1).numpy())
    assert float(whole.compute()["balanced_accuracy"]) == pytest.approx(want)
