"""Written predictions against the source parquet: each row's label and fwd_return are the ones the source
splits hold at that (datetime, symbol). Nothing here rebuilds the expected frame with the code under test."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panels import SPLIT_FILES

from ensemble.cli import main

KEYS = ["datetime", "symbol"]


def assert_matches_source(pred: pd.DataFrame, source: pd.DataFrame, horizon: int, where: str) -> None:
    """Every predicted row exists in ``source``, with the same label and fwd_return at horizon ``horizon``."""
    assert len(pred) > 0 and not pred.duplicated(KEYS).any(), where
    joined = pred.merge(source[[*KEYS, f"label_h{horizon}", f"fwd_return_h{horizon}"]], on=KEYS, how="left",
                        validate="one_to_one", indicator=True)
    assert (joined["_merge"] == "both").all(), f"{where}: rows not in the source"
    labelled = joined[f"label_h{horizon}"].notna()
    assert labelled.any(), where
    np.testing.assert_array_equal(joined.loc[labelled, "label"].to_numpy(dtype=float),
                                  joined.loc[labelled, f"label_h{horizon}"].to_numpy(), err_msg=f"{where}: label")
    np.testing.assert_allclose(joined.loc[labelled, "fwd_return"].to_numpy(dtype=float),
                               joined.loc[labelled, f"fwd_return_h{horizon}"].to_numpy(), rtol=1e-6, atol=1e-9,
                               err_msg=f"{where}: fwd_return")
    # rows without a label in the source carry none in the predictions either
    assert joined.loc[~labelled, "label"].isna().all(), f"{where}: a label invented for an unlabelled row"


@pytest.mark.parametrize(
    ("config", "horizon", "extra"),
    [
        ("configs/lstm.yaml", 5, ["--model.init_args.net.init_args.hidden_size", "8"]),
        ("configs/lightgbm.yaml", 20, ["--data.seq_len", "1"]),  # another horizon: the right columns are read
    ],
)
def test_run_and_export_predictions_match_the_source_rows(tmp_path, splits, fit_args, config, horizon, extra):
    name = Path(config).stem
    assert main(["fit", *fit_args(config, epochs=1), "--data.horizon", str(horizon), *extra]) == 0
    run = tmp_path / "runs" / f"{name}_h{horizon}" / "version_0"
    source = {s: pd.read_parquet(splits / f) for s, f in SPLIT_FILES.items()}
    for split in ("val", "test"):
        pred = pd.read_parquet(run / "predictions" / f"{split}.parquet")
        assert_matches_source(pred, source[split], horizon, f"{name} {split}")
        assert pred["label"].notna().all()  # run predictions cover labelled rows only

    export = tmp_path / "export"
    assert main(["export", "--run", str(run), "--out", str(export)]) == 0
    out = tmp_path / "pred.parquet"
    argv = ["predict", "--from", str(export), "--input", str(splits / SPLIT_FILES["test"]), "--out", str(out)]
    assert main(argv) == 0
    fresh = pd.read_parquet(out)
    assert_matches_source(fresh, source["test"], horizon, f"{name} predict --from")
    assert fresh["label"].isna().any()  # unlabelled rows near the end are predicted too, without a label


def test_the_check_catches_swapped_symbols(splits):
    """The check has teeth: predictions whose symbol names are reversed disagree with the source."""
    source = pd.read_parquet(splits / SPLIT_FILES["test"])
    pred = source[[*KEYS, "label_h5", "fwd_return_h5"]].dropna().rename(
        columns={"label_h5": "label", "fwd_return_h5": "fwd_return"})
    assert_matches_source(pred, source, 5, "identity")
    names = sorted(pred.symbol.unique())
    pred["symbol"] = pred.symbol.map(dict(zip(names, names[::-1], strict=True)))
    with pytest.raises(AssertionError):
        assert_matches_source(pred, source, 5, "swapped")
