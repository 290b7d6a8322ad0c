"""Tree design matrices (plain rows, flattened lags, window summaries) and training weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ensemble.models.trees.design as design
from ensemble.models.trees import TreeSplit, XGBoostModel
from ensemble.models.trees.design import design_matrix, design_names


@pytest.fixture
def rows():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(40, 3, generator=gen)
    ends = torch.tensor([5, 9, 17, 30, 39])
    return features, ends


def test_seq_len_one_is_the_feature_rows(rows):
    features, ends = rows
    np.testing.assert_array_equal(design_matrix(features, ends, 1), features[ends].numpy())
    assert design_names(["a", "b", "c"], 1, "lags") == ["a", "b", "c"]


def test_lags_flatten_the_window_lag_by_lag(rows):
    features, ends = rows
    X = design_matrix(features, ends, 4, "lags")
    expected = np.stack([np.concatenate([features[e - k].numpy() for k in range(4)]) for e in ends.tolist()])
    np.testing.assert_array_equal(X, expected)
    names = design_names(["a", "b", "c"], 4, "lags")
    assert names[:4] == ["a@t", "b@t", "c@t", "a@t-1"] and names[-1] == "c@t-3" and len(names) == X.shape[1]


def test_summary_columns(rows):
    features, ends = rows
    X = design_matrix(features, ends, 5, "summary")
    windows = np.stack([features[e - 4 : e + 1].numpy() for e in ends.tolist()])  # (B, L, F)
    expected = np.concatenate([windows[:, -1], windows.mean(1), windows.std(1), windows.min(1), windows.max(1)], axis=1)
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    names = design_names(["a", "b", "c"], 5, "summary")
    assert names[:4] == ["a_last", "b_last", "c_last", "a_mean"] and len(names) == X.shape[1] == 15


def test_chunks_give_the_same_matrix(rows, monkeypatch):
    features, ends = rows
    whole = design_matrix(features, ends, 3, "lags")
    monkeypatch.setattr(design, "_CHUNK_BYTES", 3 * 3 * 4 * 2)  # two windows per chunk
    np.testing.assert_array_equal(design_matrix(features, ends, 3, "lags"), whole)


def test_unknown_window_features_fail():
    with pytest.raises(ValueError, match="window_features"):
        XGBoostModel(window_features="mean", seq_len=3)


def test_training_weights_multiply_class_and_sample_weights():
    y = np.array([0, 1, 2, 2, 1, 1])
    split = TreeSplit(
        X=np.zeros((6, 1), np.float32),
        y=y,
        weight=np.arange(1, 7, dtype=np.float32),
        time=np.arange(6),
        symbol=np.zeros(6, np.int64),
        fwd_return=np.zeros(6, np.float32),
        symbols=["S"],
    )
    assert XGBoostModel().sample_weight(split) is None
    np.testing.assert_allclose(XGBoostModel(use_sample_weights=True).sample_weight(split), split.weight)
    weighted = XGBoostModel(class_weights=[2.0, 1.0, 0.5], use_sample_weights=True).sample_weight(split)
    np.testing.assert_allclose(weighted, np.array([2.0, 1.0, 0.5, 0.5, 1.0, 1.0]) * split.weight)
    balanced = XGBoostModel(class_weights="balanced").sample_weight(split)
    np.testing.assert_allclose(np.bincount(y, weights=balanced), [2.0, 2.0, 2.0])  # every class weighs n / 3
