"""``predict`` on val and then on test of one checkpoint writes two evaluations (``eval/predict-val-best``,
``eval/predict-test-best``), neither overwriting the other, each holding its own split's rows."""

import pandas as pd
import pytest
from panels import SPLIT_FILES

from ensemble.cli import main


@pytest.mark.parametrize("config", ["configs/lstm.yaml", "configs/lightgbm.yaml"])
def test_predict_on_val_then_test_keeps_both(tmp_path, fit_args, splits, config, capsys):
    assert main(["fit", *fit_args(config, epochs=1), "--test", "false"]) == 0
    for split in ("val", "test"):
        assert main(["predict", *fit_args(config), "--ckpt_path", "best", "--data.predict_split", split]) == 0
        assert f"predict-{split}-best" in capsys.readouterr().out  # the path the user is told
    (run,) = (tmp_path / "runs").glob("*/version_0")
    for split in ("val", "test"):
        (folder,) = (run / "eval").glob(f"predict-{split}-best*")
        got = pd.read_parquet(folder / "predictions" / "predict.parquet")
        times = pd.read_parquet(splits / SPLIT_FILES[split], columns=["datetime"])["datetime"]
        assert got["datetime"].min() >= times.min() and got["datetime"].max() <= times.max(), split
