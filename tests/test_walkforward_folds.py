"""Walk-forward fold arithmetic (ensemble/data/folds.py): purge, embargo, inner validation and test coverage,
as properties over random panels (unequal symbol lengths, gaps in time, missing labels), plus worked examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble.data.contract import DataContractError
from ensemble.data.folds import PURGE_ENV, FoldSpec, bar_positions, block_bounds, cut_folds
from ensemble.data.panel import SplitPanel

HOUR = 3_600_000_000_000


def panel_of(symbol_times: list[np.ndarray], labels: list[np.ndarray]) -> SplitPanel:
    """A panel sorted by (symbol, time) from per-symbol ns times and class ids (-1: missing)."""
    n = sum(len(t) for t in symbol_times)
    return SplitPanel(
        path=Path("span"), features=torch.zeros(n, 1), label=torch.from_numpy(np.concatenate(labels)),
        fwd_return=torch.zeros(n), weight=torch.ones(n),
        symbol=torch.from_numpy(np.repeat(np.arange(len(symbol_times)), [len(t) for t in symbol_times])),
        time=torch.from_numpy(np.concatenate(symbol_times)), symbols=[f"S{i}" for i in range(len(symbol_times))],
        is_context=torch.zeros(n, dtype=torch.bool),
    )


@st.composite
def panels(draw):
    n_symbols = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    h = draw(st.sampled_from([1, 5, 20]))
    rng = np.random.default_rng(seed)
    times, labels = [], []
    for _ in range(n_symbols):
        length = int(rng.integers(120, 400))
        steps = rng.choice([1, 1, 1, 2, 7], size=length)  # gaps: weekends, halts
        times.append((int(rng.integers(0, 60)) + np.cumsum(steps)) * HOUR)
        label = rng.integers(0, 3, length)
        label[rng.random(length) < 0.1] = -1
        label[-h:] = -1  # the label window runs past the data
        labels.append(label)
    return panel_of(times, labels), h, draw(st.integers(1, 3))


specs = st.builds(
    FoldSpec,
    folds=st.integers(2, 5),
    mode=st.just("expanding"),
    val_bars=st.one_of(st.none(), st.integers(1, 10)),
    val_fraction=st.floats(0.05, 0.4),
    embargo=st.sampled_from([0, 0, 3]),
) | st.builds(
    FoldSpec,
    folds=st.integers(2, 5),
    mode=st.just("rolling"),
    train_bars=st.integers(60, 200),
    val_bars=st.one_of(st.none(), st.integers(1, 10)),
    embargo=st.sampled_from([0, 0, 3]),
)


def eligible_rows(panel: SplitPanel, seq_len: int) -> np.ndarray:
    pos, _ = bar_positions(panel.symbol.numpy())
    return (panel.label.numpy() >= 0) & (pos >= seq_len - 1)


@settings(max_examples=80, deadline=None)
@given(panels(), specs)
def test_folds_purge_embargo_and_cover_the_blocks_once(drawn, spec):
    panel, h, seq_len = drawn
    eligible = eligible_rows(panel, seq_len)
    try:
        folds = cut_folds(panel, eligible, h, spec)
    except DataContractError as err:  # a fold with nothing left to train or validate on: one line naming it
        assert "fold" in str(err) or "wf.folds" in str(err)
        return
    symbol, time = panel.symbol.numpy(), panel.time.numpy()
    pos, _ = bar_positions(symbol)
    reach = h + spec.embargo  # a target at bar p uses bars p+1 .. p+h; the embargo adds k more
    for fold in folds:
        for part in (fold.train, fold.val, fold.test):
            assert eligible[part].all()
        # no fold trains (or early-stops) on a row at or after its test block
        assert (time[fold.train] < fold.test_start).all() and (time[fold.val] < fold.test_start).all()
        assert not set(fold.val) & set(fold.train)
        for s in np.unique(symbol):
            mine = symbol == s
            train_pos, val_pos = pos[fold.train[mine[fold.train]]], pos[fold.val[mine[fold.val]]]
            first_test = int((mine & (time < fold.test_start)).sum())  # the symbol's first bar in the block
            # inner val and its label windows stay before the test block
            assert (val_pos + reach < first_test).all()
            if val_pos.size:  # no training label window reaches the inner-val slice
                assert (train_pos + reach < val_pos.min()).all()
            assert (train_pos + reach < first_test).all()
            if spec.mode == "rolling":
                assert (train_pos >= first_test - spec.train_bars).all()
            if spec.val_bars is not None and val_pos.size:
                assert val_pos.size <= spec.val_bars
    # every eligible row from the first block on is one fold's test row, exactly once, in time order of folds
    tested = np.concatenate([f.test for f in folds])
    assert len(tested) == len(np.unique(tested))
    cuts = block_bounds(time, eligible, spec.folds)
    assert np.array_equal(np.sort(tested), np.flatnonzero(eligible & (time >= cuts[1])))
    starts = [f.test_start for f in folds]
    assert starts == sorted(starts)


def test_worked_example_one_symbol():
    """30 hourly bars, all labelled, h=1, 2 folds: 3 clock groups of 10 bars; fold 1 tests bars 10..19.
    val_bars=1: the slice is bar 8 (a target) and bar 9 (its window (9, 10] reaches the block: purged); training
    bars 0..7, of which bar 7 is purged (its window (7, 8] reaches the slice). Embargo 1 widens each gap by a bar."""
    panel = panel_of([np.arange(30) * HOUR], [np.zeros(30, dtype=np.int64)])
    folds = cut_folds(panel, np.ones(30, bool), 1, FoldSpec(folds=2, val_bars=1))
    assert [f.test.tolist() for f in folds] == [list(range(10, 20)), list(range(20, 30))]
    assert folds[0].val.tolist() == [8] and folds[0].train.tolist() == list(range(7))
    assert folds[1].val.tolist() == [18] and folds[1].train.tolist() == list(range(17))
    assert folds[0].purged == 2
    embargoed = cut_folds(panel, np.ones(30, bool), 1, FoldSpec(folds=2, val_bars=1, embargo=1))
    assert embargoed[0].val.tolist() == [7] and embargoed[0].train.tolist() == list(range(5))
    assert embargoed[0].purged == 4  # bars 5, 6 (train side) and 8, 9 (val side)


def test_rolling_window_and_purge_switch(monkeypatch):
    panel = panel_of([np.arange(40) * HOUR], [np.zeros(40, dtype=np.int64)])
    spec = FoldSpec(folds=3, mode="rolling", train_bars=12, val_bars=2)
    fold = cut_folds(panel, np.ones(40, bool), 3, spec)[1]  # block from bar 20: window bars 8..19
    assert fold.val.tolist() == [15, 16] and fold.train.tolist() == list(range(8, 12))
    monkeypatch.setenv(PURGE_ENV, "0")  # the test-only switch: label windows may cross the boundaries
    fold = cut_folds(panel, np.ones(40, bool), 3, spec)[1]
    assert fold.val.tolist() == [18, 19] and fold.train.tolist() == list(range(8, 18))


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"folds": 1}, "wf.folds"), ({"embargo": -1}, "wf.embargo"), ({"mode": "sliding"}, "wf.mode"),
    ({"mode": "rolling"}, "wf.train_bars"), ({"val_bars": 0}, "wf.val_bars"),
    ({"val_fraction": 1.0}, "wf.val_fraction"),
    ({"train_bars": 100}, "wf.train_bars"),
])  # fmt: skip
def test_bad_spec_names_the_key(kwargs, key):
    with pytest.raises(DataContractError, match=key):
        FoldSpec(**kwargs)


def test_too_few_timestamps_for_the_folds():
    panel = panel_of([np.arange(4) * HOUR], [np.zeros(4, dtype=np.int64)])
    with pytest.raises(DataContractError, match=r"wf\.folds=5: the span has only 4 distinct target timestamps"):
        cut_folds(panel, np.ones(4, bool), 1, FoldSpec(folds=5))


@pytest.mark.parametrize(("n", "folds"), [(30, 2), (40, 3), (31, 2), (43, 5), (7, 6)])
def test_blocks_against_sklearn_time_series_split(n, folds):
    """The blocks are scikit-learn's ``TimeSeriesSplit(n_splits=folds)`` test sets on the distinct timestamps
    exactly when their count n is a multiple of folds + 1. Otherwise sklearn gives the remainder n mod (folds + 1)
    to the first training group and every test block n // (folds + 1) stamps; here group k starts at
    floor(k n / (folds + 1)), so the remainder is spread and the groups differ by at most one stamp."""
    from sklearn.model_selection import TimeSeriesSplit

    time = np.arange(n, dtype=np.int64) * HOUR
    cuts = block_bounds(time, np.ones(n, bool), folds)
    ours = [np.flatnonzero((time >= cuts[k]) & (time < cuts[k + 1])).tolist() for k in range(1, folds + 1)]
    theirs = [test.tolist() for _, test in TimeSeriesSplit(n_splits=folds).split(time)]
    if n % (folds + 1) == 0:
        assert ours == theirs
    else:
        assert ours != theirs and [len(t) for t in theirs] == [n // (folds + 1)] * folds
        assert [b[0] for b in ours] == [k * n // (folds + 1) for k in range(1, folds + 1)]
        sizes = [ours[0][0]] + [len(b) for b in ours]  # group 0 (training only), then each block
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_no_train_target_hint_fits_the_mode(mode):
    """Expanding mode trains on every bar before the block: its hint never names wf.train_bars (rolling only)."""
    panel = panel_of([np.arange(12) * HOUR], [np.zeros(12, dtype=np.int64)])
    spec = FoldSpec(folds=2, val_bars=2, mode=mode, train_bars=4 if mode == "rolling" else None)
    with pytest.raises(DataContractError, match="no train target") as err:
        cut_folds(panel, np.ones(12, bool), 2, spec)
    assert ("wf.train_bars" in str(err.value)) == (mode == "rolling"), str(err.value)


def test_a_window_longer_than_the_first_fold_is_blamed_on_seq_len_not_purging():
    """Labelled rows that would give the first fold its training targets, all taken by the input window's warm-up
    (a row needs seq_len bars of its own symbol behind it): the line names data.seq_len, not purging."""
    n, h = 60, 2
    panel = panel_of([np.arange(n) * HOUR, np.arange(n) * HOUR], [np.zeros(n, dtype=np.int64)] * 2)
    labelled = np.ones(2 * n, bool)
    pos = np.tile(np.arange(n), 2)
    spec = FoldSpec(folds=2, val_bars=2)
    assert len(cut_folds(panel, labelled, h, spec, labelled)) == 2  # the labelled rows alone make both folds
    with pytest.raises(DataContractError, match="no train target") as err:
        cut_folds(panel, pos >= 20, h, spec, labelled)  # seq_len 21: the first fold's window is bars 20-19
    assert "data.seq_len" in str(err.value) and "purging" not in str(err.value), str(err.value)
    with pytest.raises(DataContractError, match=r"data.seq_len or fewer folds, or a smaller wf.embargo \(now 3 bars\)"):
        cut_folds(panel, pos >= 20, h, FoldSpec(folds=2, val_bars=2, embargo=3), labelled)  # both take targets
    with pytest.raises(DataContractError, match="after purging"):  # no labelled row would do: purging is the cause
        cut_folds(panel, labelled, 25, spec, labelled)
