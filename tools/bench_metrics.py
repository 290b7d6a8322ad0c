"""Cost of the metric suite on a production-size test split, against one LightGBM predict on the same split.

    python tools/bench_metrics.py [--root data/demo] [--horizon 5] [--repeats 7] [--rounds N]

The split is the demo's test file (10 symbols x 1,866 bars = 18,660 rows, 107 features, the production
size). LightGBM is trained once with ``configs/lightgbm.yaml``'s parameters for its full cap of rounds (300,
900 trees: what a run that never stops early predicts with), or ``--rounds`` (80: the model the demo's
early stopping keeps). Timed, each as a tree run evaluates a split:

- "suite": build a ``MetricSuite``, one ``update`` with the whole split, ``compute`` (classification,
  confusion matrix and every trading metric), for the default ``TradingConfig`` and for a top-k book;
  "trading metrics alone": the same for the ``TradingMetrics`` part only;
- "predict": ``Booster.predict`` on the split's feature matrix, with 1 thread and with the library default.

Runs alternate and each keeps its fastest repeat, which damps the noise of a shared machine; CPU time
(``time.process_time``, all threads) is printed beside wall time, as it is steadier under others' load.
torch runs on one thread, as ``TreeTrainer.evaluate`` sets it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch
import yaml

from ensemble.data import DEFAULT_DEMO_ROOT
from ensemble.data.demo import make_demo_splits
from ensemble.metrics import MetricSuite, TradingConfig, trading_metrics
from ensemble.metrics.book import size_positions

CONFIG = Path(__file__).parents[1] / "configs" / "lightgbm.yaml"
LGB_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "bagging_fraction", "bagging_freq",
            "feature_fraction", "lambda_l2", "max_bin")


def load(root: Path, horizon: int) -> dict[str, pd.DataFrame]:
    if not (root / "train_scaled.parquet").exists():
        make_demo_splits(root)
    frames = {s: pd.read_parquet(root / f"{s}_scaled.parquet") for s in ("train", "test")}
    return {s: df[df[f"label_h{horizon}"].notna()].reset_index(drop=True) for s, df in frames.items()}


def timed(fn) -> np.ndarray:
    """(wall, cpu) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_DEMO_ROOT))
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=None,
                        help="boosting rounds (default: the config's cap, max_epochs x rounds_per_epoch; the demo's "
                             "early stopping keeps 40-80 with the shipped config)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames, h = load(args.root, args.horizon), args.horizon
    features = [c for c in frames["train"].columns if c not in ("datetime", "symbol")
                and not c.startswith(("label_", "fwd_return_", "sample_weight_"))]
    cfg = yaml.safe_load(CONFIG.read_text())
    params = {k: cfg["model"]["init_args"][k] for k in LGB_KEYS}
    rounds = args.rounds or cfg["trainer"]["max_epochs"] * cfg["trainer"]["rounds_per_epoch"]
    train = frames["train"]
    booster = lgb.train({**params, "objective": "multiclass", "num_class": 3, "verbose": -1, "seed": 0},
                        lgb.Dataset(train[features].to_numpy(np.float32), train[f"label_h{h}"].to_numpy() + 1),
                        rounds)
    test = frames["test"]
    x = test[features].to_numpy(np.float32)
    probs = torch.from_numpy(booster.predict(x, num_threads=1).astype(np.float32))
    target = torch.from_numpy(test[f"label_h{h}"].to_numpy(np.int64) + 1)
    time_ns = torch.from_numpy(test["datetime"].to_numpy().astype("int64"))
    symbol = torch.from_numpy(pd.factorize(test["symbol"])[0])
    fwd = torch.from_numpy(test[f"fwd_return_h{h}"].to_numpy(np.float32, copy=True))

    def suite(config: TradingConfig) -> dict[str, float]:
        s = MetricSuite("test", h, 8760.0, config)
        s.update(probs, target, time_ns, fwd, symbol=symbol)
        return s.compute()

    def trading_only(config: TradingConfig) -> dict:
        m = trading_metrics(h, 8760.0, config)
        m.update(time_ns, size_positions(probs, config), fwd, symbol=symbol, score=probs[:, 2] - probs[:, 0])
        return m.compute()

    runs = {
        "trading metrics alone, per_symbol": lambda: trading_only(TradingConfig()),
        "suite, per_symbol book": lambda: suite(TradingConfig()),
        "suite, topk book (k=2)": lambda: suite(TradingConfig(book="topk", k=2)),
        "LightGBM predict, 1 thread": lambda: booster.predict(x, num_threads=1),
        "LightGBM predict, default threads": lambda: booster.predict(x),
    }
    best = {name: np.full(2, np.inf) for name in runs}
    for _ in range(args.repeats):  # alternate, keep each one's fastest
        for name, fn in runs.items():
            best[name] = np.minimum(best[name], timed(fn))
    print(f"{len(test)} rows x {len(features)} features, horizon {h}, {booster.num_trees()} trees, "
          f"fastest of {args.repeats}")
    print(f"{'':<38} {'wall ms':>8} {'cpu ms':>8}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<38} {wall * 1e3:8.1f} {cpu * 1e3:8.1f}")
    for book in ("per_symbol", "topk"):
        suite_s = best[next(k for k in best if k.startswith("suite") and book in k)]
        for threads in ("1 thread", "default threads"):
            wall, cpu = suite_s / best[f"LightGBM predict, {threads}"]
            print(f"suite ({book}) / predict ({threads}): wall {wall:.3f}, cpu {cpu:.3f}")


if __name__ == "__main__":
    main()
