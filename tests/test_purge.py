"""The given splits are checked for label overlap, counted in each symbol's own bars (``ensemble.data.purge``)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panels import make_frames, write_frames

from ensemble.data.constants import SPLITS
from ensemble.data.contract import DataContractError
from ensemble.data.purge import SplitKeys, label_overlaps, overlap_error
from ensemble.data.split_data import SplitData


def _keys(rows: dict[str, list[tuple[str, pd.Timestamp, bool]]], tz: str | None = None) -> list[SplitKeys]:
    """SplitKeys per split from (symbol, local time, labelled) rows."""
    out = []
    for split in SPLITS:
        names = sorted({s for s, _, _ in rows[split]})
        stamps = pd.DatetimeIndex([t for _, t, _ in rows[split]]).as_unit("ns")
        utc = stamps.tz_localize(tz).tz_convert("UTC").tz_localize(None) if tz else stamps
        out.append(SplitKeys(Path(f"{split}.parquet"), np.array([names.index(s) for s, _, _ in rows[split]]),
                             utc.asi8, names, tz, np.array([lab for _, _, lab in rows[split]])))
    return out


def _split(symbols: dict[str, list[pd.Timestamp]], unlabelled: dict[str, int]) -> list[tuple[str, pd.Timestamp, bool]]:
    """Rows of each symbol at its times; its last ``unlabelled[symbol]`` rows have no label."""
    rows = []
    for s, times in symbols.items():
        n = len(times) - unlabelled.get(s, 0)
        rows += [(s, t, i < n) for i, t in enumerate(times)]
    return rows


# daily bars: weekends, holidays (Fri 24 and Fri 31 Dec 2021: no symbol trades) and B's dropped 29 Dec; C trades
# every day but those holidays, so weekends are open dates and only A's and B's own weekdays keep them out
HOLIDAYS = {pd.Timestamp("2021-12-24"), pd.Timestamp("2021-12-31")}
DAYS = [d for d in pd.bdate_range("2021-11-01", "2022-02-28") if d not in HOLIDAYS]
EVERY_DAY = [d for d in pd.date_range("2021-11-01", "2022-02-28") if d not in HOLIDAYS]
VAL_START, TEST_START = pd.Timestamp("2022-01-03"), pd.Timestamp("2022-02-01")


def _daily(unlabelled_a: int, unlabelled_b: int) -> list[SplitKeys]:
    parts = {"train": [d for d in DAYS if d < VAL_START], "val": [d for d in DAYS if VAL_START <= d < TEST_START],
             "test": [d for d in DAYS if d >= TEST_START]}
    b_train = [d for d in parts["train"] if d != pd.Timestamp("2021-12-29")]  # dropped upstream: still a bar
    c = {"train": [d for d in EVERY_DAY if d < VAL_START], "val": [d for d in EVERY_DAY if d >= VAL_START]}
    return _keys({
        "train": _split({"A": parts["train"], "B": b_train, "C": c["train"]}, {"A": unlabelled_a, "B": unlabelled_b,
                                                                               "C": 5}),
        "val": _split({"A": parts["val"], "B": parts["val"], "C": c["val"]}, {"A": 5, "B": 5}),
        "test": _split({"A": parts["test"], "B": parts["test"]}, {}),
    })


def test_daily_weekends_and_holidays_are_not_bars_but_a_dropped_row_is():
    # 5 bars before Mon 3 Jan: 30, 29, 28, 27, 23 Dec (31 Dec and 24 Dec closed, 25-26 Dec a weekend).
    # A purged 5 rows; B (no row on 29 Dec) purged 4 rows, which are 5 bars: both clean
    assert label_overlaps(_daily(5, 4), horizon=5) == []
    # one row short each: 23 Dec's window (23 Dec, +5 bars] reaches 3 Jan. A check that counted weekends or
    # holidays as bars would pass A; one that counted only rows would have failed B above.
    found = label_overlaps(_daily(4, 3), horizon=5)
    assert [(o.early, o.late, o.symbol, len(o.times)) for o in found] == [(0, 1, "A", 1), (0, 1, "B", 1)]
    assert pd.Timestamp(found[0].times[0]) == pd.Timestamp("2021-12-23")
    assert pd.Timestamp(found[0].first_late) == VAL_START


def _hourly(unlabelled_a: int, unlabelled_b: int) -> list[SplitKeys]:
    """New York hours 09:30..15:30 on weekdays, across the daylight saving change of Sun 14 Mar 2021: train
    starts in UTC-5 and ends Fri 19 Mar in UTC-4, val starts Mon 22 Mar 09:30. B lacks Fri 19 Mar 13:30."""
    hours = [pd.Timedelta(hours=9.5 + k) for k in range(7)]
    stamps = [d + h for d in pd.bdate_range("2021-03-01", "2021-04-09") for h in hours]
    val_start, test_start = pd.Timestamp("2021-03-22 09:30"), pd.Timestamp("2021-03-29 09:30")
    train = [t for t in stamps if t < val_start]
    return _keys({
        "train": _split({"A": train, "B": [t for t in train if t != pd.Timestamp("2021-03-19 13:30")]},
                        {"A": unlabelled_a, "B": unlabelled_b}),
        "val": _split({"A": [t for t in stamps if val_start <= t < test_start]}, {"A": 5}),
        "test": _split({"A": [t for t in stamps if t >= test_start], "B": [t for t in stamps if t >= test_start]}, {}),
    }, tz="America/New_York")


def test_hourly_session_bars_in_local_time_and_a_symbol_missing_from_val():
    assert label_overlaps(_hourly(5, 4), horizon=5) == []  # B's dropped 13:30 is a bar; nights are not
    # one row short: a clock in UTC would see 20:30Z (15:30 in winter) as a Friday bar and miss it
    assert [len(o.times) for o in label_overlaps(_hourly(4, 4), horizon=5)] == [1]
    found = label_overlaps(_hourly(2, 4), horizon=5)
    assert [(o.early, o.late, o.symbol, len(o.times)) for o in found] == [(0, 1, "A", 3)]
    assert pd.Timestamp(found[0].times[0], tz="UTC") == pd.Timestamp("2021-03-19 11:30", tz="America/New_York")
    # B has no val rows: its train labels are checked against its first test row (a week later): clean
    with pytest.raises(DataContractError) as err:
        overlap_error(_hourly(2, 4), SPLITS, found, 5)
    message = str(err.value)
    assert "\n" not in message and "train -> val" in message and "'A'" in message and "3 labelled row(s)" in message
    assert "--data.purge_labels true" in message and "2021-03-19T11:30:00-04:00" in message


def _planted(tmp_path: Path, rows: int = 3) -> Path:
    """The tests' splits with ``rows`` of S1's 5 purged train labels (the latest) written back in."""
    frames = make_frames(n_symbols=3, rows=(60, 30, 30))
    train = frames["train"]
    last = train.index[train.symbol == "S1"][-5:]  # the 5 rows within 5 bars of val
    train.loc[last[:rows], "label_h5"] = 1.0
    train.loc[last[:rows], "fwd_return_h5"] = 0.01
    return write_frames(tmp_path / "planted", frames)


def test_planted_overlap_fails_loading_in_one_line_and_purge_labels_fixes_it(tmp_path, capsys):
    from ensemble.cli import main

    root = _planted(tmp_path)
    argv = ["fit", "--config", "configs/lightgbm.yaml", "--data.root", str(root), "--trainer.max_epochs", "1",
            "--tracking.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label overlap train -> val: symbol 'S1' has 3 labelled row(s)" in err[0]
    assert "--data.purge_labels true" in err[0] and "train_scaled.parquet" in err[0]
    assert main([*argv, "--data.purge_labels", "true"]) == 0

    data = SplitData(root=str(root), purge_labels=True)
    clean = SplitData(root=str(write_frames(tmp_path / "clean", make_frames(n_symbols=3, rows=(60, 30, 30)))))
    data.setup("fit")
    clean.setup("fit")
    train, reference = data.panel("train"), clean.panel("train")
    assert len(train) == len(reference)  # rows kept as past context
    assert (train.label != reference.label).sum() == 0 and (train.weight[train.label < 0] == 0).all()
    assert np.array_equal(data.ends["train"].numpy(), clean.ends["train"].numpy())


def test_clean_splits_and_the_demo_data_pass(tmp_path):
    from ensemble.data.demo import DEMO_HORIZONS, make_demo_splits

    make_demo_splits(tmp_path / "demo")  # the full default demo the README trains on (~10 s): no false alarm
    for horizon in DEMO_HORIZONS:
        data = SplitData(root=str(tmp_path / "demo"), horizon=horizon)
        data.setup("fit")
        assert data._purged == {split: {} for split in SPLITS}
    for rows in (1, 0):  # one planted row is found; the tests' own splits are clean
        data = SplitData(root=str(_planted(tmp_path / f"r{rows}", rows)), purge_labels=True)
        data.setup("fit")
        assert {s: len(t) for s, t in data._purged["train"].items()} == ({"S1": 1} if rows else {})
