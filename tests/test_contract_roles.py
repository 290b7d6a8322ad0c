"""Column roles straight from a schema: what may and may not become a feature, and the one-line errors."""

from pathlib import Path

import pyarrow as pa
import pytest

from ensemble.data import DataContractError, detect_roles
from ensemble.data.contract import check_same_features

BASE = [("datetime", pa.timestamp("ns")), ("symbol", pa.string()), ("f0", pa.float32()), ("flag", pa.bool_()),
        ("count", pa.int64()), ("label_h5", pa.float64()), ("fwd_return_h5", pa.float64())]


def _roles(*extra: tuple[str, pa.DataType], drop: tuple[str, ...] = (), **kwargs):
    fields = [f for f in BASE if f[0] not in drop] + list(extra)
    return detect_roles(pa.schema(fields), "split.parquet", **kwargs)


def test_numeric_and_boolean_columns_are_features_in_file_order():
    roles = _roles()
    assert roles.features == ("f0", "flag", "count")
    assert roles.labels == {5: "label_h5"} and roles.fwd_returns == {5: "fwd_return_h5"}


@pytest.mark.parametrize("dtype", [pa.string(), pa.large_string(), pa.timestamp("ns")])
def test_a_non_numeric_leftover_is_an_error_not_a_feature(dtype):
    with pytest.raises(DataContractError, match=r"split.parquet: column 'sector' is .*not numeric"):
        _roles(("sector", dtype))
    assert "sector" not in _roles(("sector", dtype), exclude=["sec*"]).features  # unless declared


def test_a_split_without_labels_is_refused_unless_predicting():
    with pytest.raises(DataContractError, match=r"split.parquet: no label column \(expected 'label_h\{H\}'"):
        _roles(drop=("label_h5",))
    assert _roles(drop=("label_h5",), require_label=False).labels == {}


DIFFER = r"val.parquet: feature columns differ from train.parquet: "


@pytest.mark.parametrize(("other", "message"), [
    ((("extra0", pa.float32()), ("f_new", pa.float32())), DIFFER + r"extra \['f_new'\]"),
    ((), DIFFER + r"missing \['extra0'\]"),
])
def test_splits_must_offer_the_same_features(other, message):
    reference = _roles(("extra0", pa.float32()))
    with pytest.raises(DataContractError, match=message):
        check_same_features(reference, _roles(*other), Path("train.parquet"), Path("val.parquet"))
    check_same_features(reference, reference, Path("train.parquet"), Path("val.parquet"))  # same: accepted
