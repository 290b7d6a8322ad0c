"""Caruana ensemble selection and the best-member "blend" against a greedy selection worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensemble.ensembling.methods import METHODS, BestMember, CaruanaBlend, log_loss
from ensemble.errors import ConfigError

# Hand case: 6 rows, labels y; what matters to log loss is each member's probability of the true class:
#   A (0): .9 .9 .9 .9 .05 .05   sure, and badly wrong on the last two rows
#   B (1): .5 everywhere
#   C (2): 1/3 everywhere (uniform)
# (the other two classes share the rest equally). Log loss of a mix with weight a on A, b on B, c on C:
#   -(4 ln(.9a + .5b + c/3) + 2 ln(.05a + .5b + c/3)) / 6.
Y = np.array([0, 1, 2, 0, 1, 2])
OWN = np.array([[0.9, 0.9, 0.9, 0.9, 0.05, 0.05], [0.5] * 6, [1 / 3] * 6])


def _probs(own: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.repeat(((1 - own) / 2)[:, :, None], 3, axis=2)
    out[:, np.arange(len(y)), y] = own
    return out


PROBS = _probs(OWN, Y)
# Step 1 (init: the best single member): A 1.0688 = -(4 ln .9 + 2 ln .05) / 6, B .6931 = ln 2, C 1.0986 = ln 3: B.
# Step 2, B + ?: +A (.7, .275): .66811; +B: .69315; +C (.4167): .87547.                                  -> A
# Step 3, {A, B} + ?: +A (.7667, .2): .71361; +B (.6333, .35): .65445; +C (.5778, .2944): .77329.        -> B
# Step 4, {A, B, B} + ?: +A (.7, .275): .66811; +B (.6, .3875): .65656; +C (.5583, .3458): .74247.        -> B
# Step 5, {A, B, B, B} + ?: +A (.66, .32): .65682; +B (.58, .41): .66035; +C: higher.                    -> A
# Path losses .69315 .66811 .65445 .65656 .65682: the best prefix is 3 selections, {A, B, B}.
SEQUENCE = [1, 0, 1, 1, 0]
PATH_LOSSES = [math.log(2), -(4 * math.log(0.7) + 2 * math.log(0.275)) / 6,
               -(4 * math.log(1.9 / 3) + 2 * math.log(0.35)) / 6, -(4 * math.log(0.6) + 2 * math.log(0.3875)) / 6,
               -(4 * math.log(0.66) + 2 * math.log(0.32)) / 6]  # fmt: skip


def test_caruana_matches_the_greedy_selection_worked_by_hand():
    blend = CaruanaBlend(size=5).fit(PROBS, Y)
    assert blend.sequences_[0].tolist() == SEQUENCE
    np.testing.assert_allclose(blend.path_losses_[0], PATH_LOSSES, rtol=1e-12)
    assert blend.counts_.tolist() == [1, 2, 0]
    np.testing.assert_allclose(blend.weights_, [1 / 3, 2 / 3, 0])
    assert log_loss(blend.predict_proba(PROBS), Y) == pytest.approx(PATH_LOSSES[2], rel=1e-12)


def test_caruana_keeps_the_shorter_of_two_equal_prefixes():
    # Step 6 adds B: {A, A, B, B, B, B} is the same mixture as {A, B, B} (loss .65445), summed in another
    # order; the shorter prefix is kept.
    blend = CaruanaBlend(size=6).fit(PROBS, Y)
    assert blend.sequences_[0].tolist() == [*SEQUENCE, 1]
    assert blend.path_losses_[0][-1] == pytest.approx(PATH_LOSSES[2], rel=1e-12)
    assert blend.counts_.tolist() == [1, 2, 0]


def test_caruana_sorted_initialisation():
    # init=2: the two best single members, B then A, then the greedy step 3 (B).
    blend = CaruanaBlend(size=3, init=2).fit(PROBS, Y)
    assert blend.sequences_[0].tolist() == [1, 0, 1] and blend.counts_.tolist() == [1, 2, 0]
    # init=3: B, A, C by their losses; nothing after, so the uniform member is in, by request.
    blend = CaruanaBlend(size=3, init=3).fit(PROBS, Y)
    assert blend.sequences_[0].tolist() == [1, 0, 2] and blend.counts_.tolist() == [1, 1, 1]
    # init=0: the first greedy step picks the best member, as init=1 does.
    assert CaruanaBlend(size=5, init=0).fit(PROBS, Y).sequences_[0].tolist() == SEQUENCE


@pytest.mark.parametrize("seed", range(4))
def test_a_uniform_member_gets_no_weight_next_to_calibrated_ones(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    truth = rng.dirichlet(np.full(3, 0.7), size=n)  # the rows' true class probabilities
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)  # labels drawn from them
    noisy = np.exp(np.log(truth) + rng.normal(0, 0.3, truth.shape))
    members = np.stack([np.full((n, 3), 1 / 3), truth, noisy / noisy.sum(axis=1, keepdims=True)])
    blend = CaruanaBlend(size=30).fit(members, y)  # the uniform member first: ties cannot favour it
    assert blend.weights_[0] == 0.0 and blend.counts_[0] == 0, blend.weights_


def test_ties_go_to_the_lowest_member_index():
    # A copy of A as member 2: every choice between A and its copy is a tie, won by index 0.
    probs = np.concatenate([PROBS[:2], PROBS[:1]])
    blend = CaruanaBlend(size=5).fit(probs, Y)
    assert blend.sequences_[0].tolist() == SEQUENCE and blend.counts_.tolist() == [1, 2, 0]
    twins = np.stack([PROBS[1], PROBS[1]])
    assert CaruanaBlend(size=4).fit(twins, Y).weights_.tolist() == [1.0, 0.0]
    assert BestMember().fit(twins, Y).weights_.tolist() == [1.0, 0.0]


def test_bagging_options():
    # Bags holding every member repeat the plain selection: the average of identical ensembles.
    plain = CaruanaBlend(size=5).fit(PROBS, Y)
    full = CaruanaBlend(size=5, bags=3, bag_fraction=1.0).fit(PROBS, Y)
    np.testing.assert_allclose(full.weights_, plain.weights_, rtol=1e-12)
    assert full.counts_.tolist() == [3, 6, 0]
    # Bags of 2 of the 3 members, seeded: reproducible, and each bag's path stays inside its members.
    a = CaruanaBlend(size=5, bags=6, bag_fraction=2 / 3, seed=1).fit(PROBS, Y)
    b = CaruanaBlend(size=5, bags=6, bag_fraction=2 / 3, seed=1).fit(PROBS, Y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert all(len(set(s.tolist())) <= 2 for s in a.sequences_)
    # The weights are the mean of the bags' own weights: rebuild them from the recorded paths.
    rebuilt = np.zeros(3)
    for seq, losses in zip(a.sequences_, a.path_losses_, strict=True):
        length = int(np.argmin(losses)) + 1  # init=1: losses[i] is after i + 1 selections
        rebuilt += np.bincount(seq[:length], minlength=3) / length / len(a.sequences_)
    np.testing.assert_allclose(a.weights_, rebuilt, rtol=1e-12)
    # A bag holds at least two members (0.2 of 3 rounds to 1): its selection is more than the draw.
    two = CaruanaBlend(size=4, bags=4, bag_fraction=0.2).fit(PROBS, Y)
    assert [len(bag) for bag in two.bags_] == [2, 2, 2, 2]


@pytest.mark.parametrize("seed", range(8))
def test_bagged_caruana_of_two_members_is_never_worse_than_the_better_one(seed):
    # Two members, bag_fraction 0.5: a bag of one member would be a coin flip that can return the worse one
    # (weights [0, 1]); each bag holds both, so every bag repeats the plain selection: {A, B, B} by hand.
    two = PROBS[:2]
    plain = CaruanaBlend(size=5).fit(two, Y)
    bagged = CaruanaBlend(size=5, bags=2, bag_fraction=0.5, seed=seed).fit(two, Y)
    np.testing.assert_allclose(bagged.weights_, plain.weights_, rtol=1e-12)
    np.testing.assert_allclose(plain.weights_, [1 / 3, 2 / 3], rtol=1e-12)
    assert log_loss(bagged.predict_proba(two), Y) <= min(log_loss(p, Y) for p in two) + 1e-12


def test_best_member_picks_the_lowest_log_loss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), size=(4, 200))
    probs[2] = 0.6 * np.eye(3)[y] + 0.4 * probs[2]  # member 2 is the skilled one
    losses = [log_loss(p, y) for p in probs]
    blend = BestMember().fit(probs, y)
    assert blend.weights_.tolist() == [0.0, 0.0, 1.0, 0.0] and int(np.argmin(losses)) == 2
    np.testing.assert_array_equal(blend.predict_proba(probs), probs[2])
    # By hand: on the hand case the best member is B (ln 2 < 1.0688 < ln 3).
    assert BestMember().fit(PROBS, Y).weights_.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("seed", range(3))
def test_caruana_is_never_worse_than_the_best_member_on_its_fit_rows(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 500)
    probs = np.stack([s * np.eye(3)[y] + (1 - s) * rng.dirichlet(np.full(3, c), size=500)
                      for s, c in rng.uniform([0, 0.3], [0.6, 3], size=(5, 2))])  # fmt: skip
    blend = CaruanaBlend().fit(probs, y)
    assert log_loss(blend.predict_proba(probs), y) <= min(log_loss(p, y) for p in probs) + 1e-12
    assert blend.weights_.sum() == pytest.approx(1.0, abs=1e-12) and (blend.weights_ >= 0).all()


def test_both_are_blend_methods():
    assert METHODS["caruana"] is CaruanaBlend and METHODS["best"] is BestMember


@pytest.mark.parametrize(
    ("options", "message"),
    [({"size": 0}, "size >= 1"), ({"size": 3, "init": 4}, "init <= size"), ({"bags": 0}, "bags must be"),
     ({"bag_fraction": 0.0}, "bag_fraction"), ({"bag_fraction": 1.5}, "bag_fraction")],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        CaruanaBlend(**options)


def test_init_above_the_member_count_is_refused_at_fit():
    with pytest.raises(ConfigError, match="init=4 is more than the 3 members"):
        CaruanaBlend(size=5, init=4).fit(PROBS, Y)


@pytest.mark.parametrize("method", [CaruanaBlend, BestMember])
def test_bad_member_probabilities_are_refused(method):
    with pytest.raises(ValueError, match="non-finite"):
        method().fit(np.full((2, 4, 3), np.nan), np.zeros(4, int))
    with pytest.raises(ValueError, match="fitted on 3 members, got 2"):
        method().fit(PROBS, Y).predict_proba(PROBS[:2])
