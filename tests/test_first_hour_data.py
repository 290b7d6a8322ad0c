"""Issue 14, what a quant hits in the first hour: the data-contract items (8, 10).

Each test builds the small input the case describes and checks the behaviour a user sees: one line on
stderr naming the file, column, row or symbol (exit 2), or the input accepted and read exactly as its
plain-typed twin.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from panels import SPLIT_FILES, make_frames, write_frames
from test_bad_input_catalogue import _cli_error

from ensemble.data import WindowDataModule


def _loaded(root, split: str = "val") -> WindowDataModule:
    dm = WindowDataModule(root=str(root))
    dm.setup("fit")
    dm.panel("test")
    return dm


# -- item 8: a float64 value that is not finite once cast to float32 is refused at load, like NaN
@pytest.mark.parametrize(
    ("column", "config"),
    [("f1", "configs/lstm.yaml"), ("f1", "configs/lightgbm.yaml"), ("fwd_return_h5", "configs/lstm.yaml"),
     ("sample_weight_h5", "configs/lstm.yaml")],
)
def test_value_beyond_float32_is_refused_naming_file_column_row(tmp_path, fit_args, capsys, column, config):
    frames = make_frames()
    train = frames["train"]
    train[column] = train[column].astype("float64")
    train.loc[7, column] = 1e300  # finite in the file, inf after the float32 cast
    symbol = train.loc[7, "symbol"]
    root = write_frames(tmp_path / "big", frames)
    line = _cli_error(capsys, ["fit", *fit_args(config=config), "--data.root", str(root)])
    for fragment in ("train_scaled.parquet", f"'{column}'", "row 7", f"symbol '{symbol}'", "1e+300", "float32"):
        assert fragment in line, line
    assert not list((tmp_path / "runs").rglob("metrics.json"))  # nothing trained on it


# -- item 10: labels as words, nullable features, duplicate columns, every Arrow string layout
WORDS = {-1.0: "short", 0.0: "flat", 1.0: "long"}


def test_labels_as_words_read_as_their_classes(tmp_path):
    frames = make_frames()
    worded = {split: df.assign(label_h5=df["label_h5"].map(WORDS)) for split, df in frames.items()}
    assert worded["val"]["label_h5"].isna().any()  # missing labels stay missing (None in a text column)
    got = _loaded(write_frames(tmp_path / "words", worded))
    want = _loaded(write_frames(tmp_path / "numbers", frames))
    for split in ("train", "val", "test"):
        assert got.panel(split).label.equal(want.panel(split).label), split


def test_unknown_label_word_names_column_value_row(tmp_path, fit_args, capsys):
    frames = make_frames()
    worded = {split: df.assign(label_h5=df["label_h5"].map(WORDS)) for split, df in frames.items()}
    worded["val"].loc[4, "label_h5"] = "up"
    symbol = worded["val"].loc[4, "symbol"]
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(write_frames(tmp_path / "bad", worded))])
    for fragment in ("val_scaled.parquet", "'label_h5'", "'up'", "row 4", f"symbol '{symbol}'", "short/flat/long"):
        assert fragment in line, line


def test_null_in_nullable_bool_feature_names_the_row(tmp_path, fit_args, capsys):
    frames = make_frames()
    for df in frames.values():
        df["flag"] = pd.array(df["f0"] > 0, dtype="boolean")
    frames["train"].loc[5, "flag"] = pd.NA
    symbol = frames["train"].loc[5, "symbol"]
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(write_frames(tmp_path / "bad", frames))])
    for fragment in ("train_scaled.parquet", "null in feature column 'flag'", "row 5", f"symbol '{symbol}'"):
        assert fragment in line, line


def test_duplicate_column_names_file_and_column(tmp_path, fit_args, capsys):
    root = write_frames(tmp_path / "bad", make_frames())
    table = pq.read_table(root / SPLIT_FILES["val"])
    table = table.append_column("f1", table.column("f2"))  # a second column named f1
    pq.write_table(table, root / SPLIT_FILES["val"])
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(root)])
    assert "val_scaled.parquet: column 'f1' appears 2 times" in line, line


def test_a_row_index_pandas_stored_is_not_a_feature(tmp_path):
    """A filtered frame written without index=False carries its old row numbers as ``__index_level_0__`` (a time
    trend, absent from any new input): it is pandas' metadata, never a feature; a named index is the same."""
    frames = make_frames()
    want = _loaded(write_frames(tmp_path / "plain", frames)).feature_names
    root = tmp_path / "indexed"
    root.mkdir()
    for split, df in frames.items():
        kept = df.set_index(pd.Index(np.random.default_rng(0).permutation(len(df)) + 7))  # not a range: stored
        (kept.set_index(kept.index.rename("row")) if split == "test" else kept).to_parquet(root / SPLIT_FILES[split])
    assert "__index_level_0__" in pq.read_schema(root / SPLIT_FILES["train"]).names
    assert _loaded(root).feature_names == want == ["f0", "f1", "f2", "f3"]


@pytest.mark.parametrize(
    "layout", [pa.string_view(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())], ids=str
)
def test_symbol_in_every_arrow_string_layout_is_accepted(tmp_path, layout):
    frames = make_frames()
    want = _loaded(write_frames(tmp_path / "plain", frames))
    root = tmp_path / "layout"
    root.mkdir()
    for split, df in frames.items():
        table = pa.Table.from_pandas(df, preserve_index=False)
        i = table.schema.get_field_index("symbol")
        table = table.set_column(i, pa.field("symbol", layout), table.column("symbol").cast(layout))
        # small row groups: a dictionary column then arrives in chunks with their own dictionaries
        pq.write_table(table, root / SPLIT_FILES[split], row_group_size=16)
    assert pq.read_schema(root / SPLIT_FILES["train"]).field("symbol").type == layout
    got = _loaded(root)
    for split in ("train", "val", "test"):
        a, b = got.panel(split), want.panel(split)
        assert a.symbols == b.symbols and a.symbol.equal(b.symbol) and a.features.equal(b.features), split
    np.testing.assert_array_equal(got.ends["val"].numpy(), want.ends["val"].numpy())


# -- item 9 (messages): times in errors are the file's own local times, not UTC
def _new_york(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    for df in frames.values():
        df["datetime"] = df["datetime"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    return frames


@pytest.mark.parametrize("case", ["duplicate", "leakage"])
def test_times_in_messages_are_in_the_files_timezone(tmp_path, fit_args, capsys, case):
    frames = _new_york(make_frames())
    train = frames["train"]
    if case == "duplicate":
        frames["train"] = pd.concat([train, train.iloc[[10]]], ignore_index=True)
        when = train.loc[10, "datetime"]
    else:  # a val row of S2 that train already covers
        leaked = train[train.symbol == "S2"].tail(1)
        frames["val"] = pd.concat([leaked, frames["val"]], ignore_index=True)
        when = leaked["datetime"].iloc[0]
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(write_frames(tmp_path / "bad", frames))])
    # New York's offset (-05:00, or -04:00 after the March change), never UTC's
    assert when.isoformat() in line and when.isoformat()[-6:] in ("-05:00", "-04:00"), (when.isoformat(), line)
