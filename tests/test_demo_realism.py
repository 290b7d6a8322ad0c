"""The default demo is believable: a fitted LightGBM reaches a gross test Sharpe a quant would accept.

Public API only: the demo panel read with pandas, LightGBM trained directly with ``configs/lightgbm.yaml``'s
settings for its 150 rounds (the CLI's early stopping keeps all 150 on this data), scored by ``MetricSuite``
at the demo's own bars_per_year (hourly, 24/7: 8760). Measured numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.data.demo import BARS_PER_YEAR, feature_names, make_demo_splits
from ensemble.metrics import MetricSuite, TradingConfig, infer_bars_per_year

HORIZON = 5
PARAMS = {  # configs/lightgbm.yaml
    "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 200, "bagging_fraction": 0.8, "bagging_freq": 1,
    "feature_fraction": 0.8, "lambda_l2": 5.0, "max_bin": 127,
}


def scored(df: pd.DataFrame, probs: np.ndarray, stage: str, config: TradingConfig) -> dict[str, float]:
    suite = MetricSuite(stage, HORIZON, BARS_PER_YEAR, config)
    suite.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(df[f"label_h{HORIZON}"].to_numpy() + 1),
                 torch.tensor(df["datetime"].to_numpy().astype("int64")),
                 torch.tensor(df[f"fwd_return_h{HORIZON}"].to_numpy()),
                 symbol=torch.tensor(pd.factorize(df["symbol"], sort=True)[0]))
    return suite.compute()


@pytest.mark.slow
def test_lightgbm_on_the_default_demo_has_a_believable_sharpe(tmp_path):
    lgb = pytest.importorskip("lightgbm")
    paths = make_demo_splits(tmp_path)  # the default: seed 0, 10 symbols, realistic signal
    frames = {s: pd.read_parquet(p) for s, p in paths.items()}
    frames = {s: df[df[f"label_h{HORIZON}"].notna()].reset_index(drop=True) for s, df in frames.items()}
    assert infer_bars_per_year(frames["train"]["datetime"].to_numpy()) == BARS_PER_YEAR == 8760
    names, train = feature_names(), frames["train"]
    booster = lgb.train({**PARAMS, "objective": "multiclass", "num_class": 3, "seed": 0, "num_threads": 1,
                         "deterministic": True, "verbose": -1},
                        lgb.Dataset(train[names].to_numpy(np.float32), train[f"label_h{HORIZON}"].to_numpy() + 1), 150)
    test = frames["test"]
    probs = booster.predict(test[names].to_numpy(np.float32))
    out = scored(test, probs, "test", TradingConfig())  # 5 bps, arg-max, per-symbol book
    print({k: round(v, 4) for k, v in out.items() if "sharpe" in k or "ic" in k or k.endswith(("turnover", "psr"))})
    assert 0.5 <= out["test/sharpe"] <= 4.0, out["test/sharpe"]
    assert 0.01 <= out["test/rank_ic"] <= 0.1, out["test/rank_ic"]
    assert out["test/sharpe_net"] < out["test/sharpe"]
    free = scored(test, probs, "test", TradingConfig(cost_bps=0))
    assert free["test/sharpe_net"] == pytest.approx(out["test/sharpe"], rel=1e-9)  # gross = net at zero cost
