"""One test per bad-input case of the data contract; each asserts the message names the culprit."""

import numpy as np
import pandas as pd
import pytest
from panels import SPLIT_FILES, make_frames, write_frames

from ensemble.data import DataContractError, WindowDataModule


def _setup(root, **dm_kwargs):
    dm = WindowDataModule(root=str(root), **dm_kwargs)
    dm.setup("fit")
    return dm


def _mutated(tmp_path, mutate):
    frames = make_frames()
    mutate(frames)
    return write_frames(tmp_path / "bad", frames)


def _set(df, row, col, value):
    df.loc[row, col] = value


def _nullable_int_feature(frames, col, null_row):
    for split, df in frames.items():  # pandas "Int64": nulls are stored as nulls, not NaN
        frames[split] = df.assign(**{col: pd.array(df.index % 3, dtype="Int64")})
    frames["train"].loc[null_row, col] = pd.NA


CASES = {
    "missing datetime": (
        lambda f: f.update(train=f["train"].drop(columns="datetime")), ["train_scaled.parquet", "datetime"]),
    "missing symbol": (lambda f: f.update(train=f["train"].drop(columns="symbol")), ["train_scaled.parquet", "symbol"]),
    "missing label for horizon": (
        lambda f: f.update(val=f["val"].drop(columns="label_h5")), ["val_scaled.parquet", "label_h5"]),
    "missing fwd_return": (
        lambda f: f.update(test=f["test"].drop(columns="fwd_return_h5")), ["test_scaled.parquet", "fwd_return_h5"]),
    "nan feature": (lambda f: _set(f["train"], 7, "f2", np.nan), ["train_scaled.parquet", "'f2'", "row 7", "nan"]),
    "inf feature": (lambda f: _set(f["val"], 3, "f0", np.inf), ["val_scaled.parquet", "'f0'", "row 3", "inf"]),
    "label outside": (lambda f: _set(f["train"], 4, "label_h5", 2.0), ["'label_h5'", "2.0", "row 4", "symbol"]),
    "non-numeric feature": (
        lambda f: f["train"].insert(3, "sector", "tech"), ["train_scaled.parquet", "'sector'", "not numeric"]),
    "negative weight": (
        lambda f: _set(f["train"], 0, "sample_weight_h5", -1.0), ["'sample_weight_h5'", "symbol 'S0'"]),
    "inf fwd_return": (lambda f: _set(f["val"], 2, "fwd_return_h5", np.inf), ["'fwd_return_h5'", "row 2", "inf"]),
    "fwd_return as text": (
        lambda f: f.update(val=f["val"].assign(fwd_return_h5=f["val"]["fwd_return_h5"].astype(str))),
        ["val_scaled.parquet", "'fwd_return_h5'", "not numeric"]),
    "null in integer feature": (
        lambda f: _nullable_int_feature(f, "f1", null_row=6),
        ["train_scaled.parquet", "null in feature column 'f1'", "row 6", "symbol 'S0'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_named(tmp_path, case):
    mutate, fragments = CASES[case]
    root = _mutated(tmp_path, mutate)
    with pytest.raises(DataContractError) as err:
        _setup(root)
    for fragment in fragments:
        assert fragment in str(err.value), (case, str(err.value))


def test_duplicate_symbol_datetime(tmp_path):
    def mutate(f):
        f["train"] = pd.concat([f["train"], f["train"].iloc[[10]]], ignore_index=True)

    with pytest.raises(DataContractError, match=r"train_scaled.parquet: duplicate \(symbol, datetime\) for symbol"):
        _setup(_mutated(tmp_path, mutate))


def test_rows_out_of_time_order(tmp_path):
    def mutate(f):
        df = f["train"]
        i, j = df.index[df.symbol == "S1"][[5, 6]]
        df.loc[[i, j]] = df.loc[[j, i]].to_numpy()

    with pytest.raises(DataContractError, match=r"out of time order for symbol 'S1'"):
        _setup(_mutated(tmp_path, mutate))


def test_feature_sets_differ(tmp_path):
    def mutate(f):
        f["test"] = f["test"].rename(columns={"f3": "f3_new"})

    msg = r"test_scaled.parquet: feature columns differ.*missing \['f3'\].*extra \['f3_new'\]"
    with pytest.raises(DataContractError, match=msg):
        _setup(_mutated(tmp_path, mutate))


def test_feature_order_may_differ(tmp_path):
    def mutate(f):
        f["val"] = f["val"][list(reversed(f["val"].columns))]

    dm = _setup(_mutated(tmp_path, mutate))
    ref = WindowDataModule(root=str(write_frames(tmp_path / "ok", make_frames())))
    ref.setup("fit")
    assert dm.panel("val").features.equal(ref.panel("val").features)


def test_overlapping_splits_are_leakage(tmp_path):
    def mutate(f):
        leaked = f["train"][f["train"].symbol == "S2"].tail(1).copy()
        f["val"] = pd.concat([leaked, f["val"]], ignore_index=True)

    with pytest.raises(DataContractError, match=r"val_scaled.parquet: leakage: symbol 'S2'"):
        _setup(_mutated(tmp_path, mutate))


def test_symbol_too_short_for_window(tmp_path):
    def mutate(f):
        f["val"] = f["val"][~((f["val"].symbol == "S1") & (f["val"].index > 30))]

    with pytest.raises(DataContractError, match=r"val_scaled.parquet: symbol 'S1' has .* rows, fewer than seq_len=15"):
        _setup(_mutated(tmp_path, mutate), seq_len=15)


def test_empty_file(tmp_path):
    def mutate(f):
        f["test"] = f["test"].iloc[:0]

    with pytest.raises(DataContractError, match=r"test_scaled.parquet: empty split \(0 rows\)"):
        _setup(_mutated(tmp_path, mutate))


def test_unreadable_file(tmp_path, splits):
    (splits / SPLIT_FILES["val"]).write_bytes(b"not a parquet file at all")
    with pytest.raises(DataContractError, match=r"val_scaled.parquet: unreadable parquet"):
        _setup(splits)


def test_missing_file(tmp_path):
    with pytest.raises(DataContractError, match=r"train_scaled.parquet: file not found"):
        _ = WindowDataModule(root=str(tmp_path / "nowhere")).num_features


def test_forward_columns_and_exclusions_never_features(tmp_path):
    def mutate(f):
        for df in f.values():
            df["label_custom"] = 1.0
            df["fwd_return_h3"] = 0.0
            df["target_secret"] = 0.5

    dm = WindowDataModule(root=str(_mutated(tmp_path, mutate)), exclude=["target_*"])
    assert dm.feature_names == ["f0", "f1", "f2", "f3"]


def test_excluded_text_column_stays_excluded_when_loading(tmp_path):
    def mutate(f):
        for df in f.values():
            df["sector"] = "tech"

    dm = _setup(_mutated(tmp_path, mutate), exclude=["sector"])  # load_split used to re-detect without it
    assert dm.feature_names == ["f0", "f1", "f2", "f3"] and dm.panel("val").features.shape[1] == 4


def test_feature_order_reads_by_name_and_must_name_the_same_features(tmp_path, splits):
    plain = _setup(splits)
    ordered = _setup(splits, feature_order=["f3", "f1", "f0", "f2"])
    assert ordered.feature_names == ["f3", "f1", "f0", "f2"]
    assert ordered.panel("val").features.equal(plain.panel("val").features[:, [3, 1, 0, 2]])
    with pytest.raises(DataContractError, match=r"train_scaled.parquet: feature columns differ from "
                       r"data.feature_order: missing \['f9'\]; extra \['f2'\]"):
        _setup(splits, feature_order=["f3", "f1", "f0", "f9"])
