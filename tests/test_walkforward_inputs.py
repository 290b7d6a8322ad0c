"""A walk-forward checks its inputs before it writes anything: a missing data root, split file or config file is
one line naming the path, and a start that fails on a bad value (wf.folds, a trading value, a model flag) leaves no
folder, record or lock behind, so the corrected command runs."""

from __future__ import annotations

import pytest
from test_walkforward_runs import LIGHTGBM, walkforward

from ensemble.cli import main


@pytest.mark.parametrize(("broken", "named"), [
    ("root", "nowhere/train_scaled.parquet: file not found (data.root="),
    ("val", "val_scaled.parquet: val split file not found (data.root="),
    ("config", "missing.yaml: config file not found"),
])  # fmt: skip
def test_missing_user_paths_are_one_line(tmp_path, splits, capsys, broken, named):
    root, config = splits, LIGHTGBM
    if broken == "root":
        root = tmp_path / "nowhere"
    elif broken == "val":
        (splits / "val_scaled.parquet").unlink()
    else:
        config = str(tmp_path / "missing.yaml")
    out = tmp_path / "wf"
    args = ["walkforward", "--config", config, "--data.root", str(root), "--wf.out", str(out), "--wf.folds", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ensemble: error: ") and named in err and "\n" not in err, err
    assert not out.exists()  # nothing written: no folder, no lock, no record


def test_a_failed_start_leaves_nothing_that_refuses_the_fixed_command(tmp_path, splits, capsys):
    out = tmp_path / "wf"
    for bad, message in ((["--wf.folds", "500"], "wf.folds=500: the span has only"),
                         (["--trading.cost_bps", "-1"], "trading.cost_bps"),
                         (["--model.init_args.num_leafs", "7"], "num_leafs")):  # fmt: skip
        assert walkforward(out, splits, "--wf.folds", "2", "--wf.span", "all", *bad) == 2
        err = capsys.readouterr().err
        assert message in err and "\n" not in err.strip(), err
        assert not out.exists(), sorted(p.name for p in out.iterdir())  # no walkforward.json, no .lock
    assert walkforward(out, splits, "--wf.folds", "2", "--wf.span", "all") == 0
    assert (out / "walkforward.json").is_file() and (out / "oof.parquet").is_file()


def test_a_bad_value_in_the_holdout_is_one_line_before_any_fold(tmp_path, splits, capsys):
    """The test split is the final model's holdout, not walked over by the folds: a NaN there is refused at the
    start, as fit refuses it, not after every fold has trained."""
    import pandas as pd

    test = pd.read_parquet(splits / "test_scaled.parquet")
    test.loc[7, "f2"] = float("nan")
    test.to_parquet(splits / "test_scaled.parquet", index=False)
    out = tmp_path / "wf"
    assert walkforward(out, splits, "--wf.folds", "2") == 2
    err = capsys.readouterr().err.strip()
    assert "test_scaled.parquet" in err and "'f2'" in err and "\n" not in err, err
    assert not out.exists()  # no fold ran, nothing written
