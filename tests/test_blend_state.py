"""Blend state (issue 18): every fitted blend method written as JSON and read back predicts what the original
predicts, to 1e-12, on rows it was not fitted on."""

import json

import numpy as np
import pytest

from ensemble.ensembling.methods import METHODS, CaruanaBlend, StackedBlend, from_state
from ensemble.errors import ConfigError


def _case(seed: int, members: int, rows: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(M, N, 3) member probabilities of mixed skill and (N,) labels drawn from the first ``classes`` classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    out = [s * np.eye(3)[y] + (1 - s) * rng.dirichlet(np.ones(3), rows) for s in rng.uniform(0, 0.6, members)]
    return np.stack(out), y


FITTED = {"mean": {}, "weighted": {}, "stacked": {"C": 0.3}, "best": {},
          "caruana": {"size": 12, "init": 2, "bags": 3, "bag_fraction": 0.7, "seed": 4}}  # fmt: skip


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_blend_read_back_from_json_predicts_as_the_fitted_one(method):
    assert set(FITTED) == set(METHODS)  # a new method is covered here too
    probs, y = _case(0, members=4, rows=300)
    fitted = METHODS[method](**FITTED[method]).fit(probs, y)
    state = json.loads(json.dumps(fitted.state()))  # through JSON text, as blend.json stores it
    assert state["method"] == method
    loaded = from_state(state)
    assert type(loaded) is type(fitted)
    fresh, _ = _case(1, members=4, rows=200)  # rows neither was fitted on
    np.testing.assert_allclose(loaded.predict_proba(fresh), fitted.predict_proba(fresh), rtol=0, atol=1e-12)
    assert loaded.state() == state  # and it writes the same state again


def test_stacked_state_holds_its_options_and_two_class_fits_round_trip():
    probs, y = _case(2, members=2, rows=250, classes=2)  # no "long" label: a binary logistic regression
    fitted = StackedBlend(C=2.5).fit(probs, y)
    state = json.loads(json.dumps(fitted.state()))
    assert state["C"] == 2.5 and state["classes"] == [0, 1] and np.shape(state["coef"]) == (1, 6)
    got = from_state(state).predict_proba(probs)
    np.testing.assert_allclose(got, fitted.predict_proba(probs), rtol=0, atol=1e-12)
    assert (got[:, 2] == 0).all()  # a class absent from the fit gets probability 0, as before


def test_caruana_state_keeps_its_options_and_counts():
    probs, y = _case(3, members=3, rows=200)
    fitted = CaruanaBlend(size=7, init=1).fit(probs, y)
    loaded = from_state(json.loads(json.dumps(fitted.state())))
    assert (loaded.size, loaded.init, loaded.bags) == (7, 1, None)
    assert loaded.counts_.tolist() == fitted.counts_.tolist() and loaded.counts_.sum() <= 7


@pytest.mark.parametrize(("state", "message"), [
    ({"method": "median", "weights": [1.0]}, "unknown method 'median'"),
    ([0.5, 0.5], "unknown method None"),
    ({"method": "stacked", "C": 1.0, "coef": [[0.0] * 6]}, "lacks 'classes', 'intercept'"),
    ({"method": "caruana", "weights": [1.0]}, "lacks 'size', 'init', 'bags', 'bag_fraction', 'seed', 'counts'"),
])  # fmt: skip
def test_a_damaged_state_is_one_line_naming_what_is_wrong(state, message):
    with pytest.raises(ConfigError, match=message):
        from_state(state)
