"""Cost of the metric suite on a production-size test split, against one LightGBM predict on the same split.

    python tools/bench_metrics.py [--root data/demo] [--horizon 5] [--rows 18610] [--repeats 9] [--rounds 30]

The split is the first ``--rows`` labelled rows of the demo's test file, whole timestamps (the issue's
production size, 18,610 rows: 373 days x 50 symbols, 107 features). The yardstick is one LightGBM predict on
those rows, single-threaded (as ``TreeTrainer`` runs torch), for three models trained on the demo's train split:

- "LightGBM defaults": the library's own defaults (100 rounds, 31 leaves, learning rate 0.1), 300 trees: a
  yardstick nobody here chose;
- "config, cap": ``configs/lightgbm.yaml``'s parameters (7 leaves) for its full cap of 300 rounds, 900 trees
  (a run that never stops early);
- "config, kept": the same parameters for ``--rounds`` (30: what the CLI's early stopping keeps on the seed-0
  demo), 90 small trees.

Timed: "suite" builds a ``MetricSuite``, makes one ``update`` with the whole split and ``compute``s it (every
classification metric and every trading metric, IC included), for the default ``TradingConfig`` and for a top-k
book (k = a fifth of the symbols); "trading metrics alone" is the trading part only. Runs alternate and each keeps
its fastest repeat, which damps the noise of a shared machine; CPU time (``time.process_time``) is printed beside
wall time, as it is steadier under others' load.
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
BARS_PER_YEAR = 252.0


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


def first_rows(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The rows of the first timestamps, whole, until at least ``rows`` rows."""
    per_time = frame.groupby("datetime", sort=True).size()
    last = per_time.index[min(int(np.searchsorted(per_time.cumsum().to_numpy(), rows)), len(per_time) - 1)]
    return frame[frame["datetime"] <= last].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_DEMO_ROOT))
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--rows", type=int, default=18610, help="test rows to score (whole timestamps)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=30,
                        help="boosting rounds of the 'config, kept' model (the demo's early stopping keeps 30)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames, h = load(args.root, args.horizon), args.horizon
    features = [c for c in frames["train"].columns if c not in ("datetime", "symbol")
                and not c.startswith(("label_", "fwd_return_", "sample_weight_"))]
    cfg = yaml.safe_load(CONFIG.read_text())
    params = {k: cfg["model"]["init_args"][k] for k in LGB_KEYS}
    cap = cfg["trainer"]["max_epochs"] * cfg["trainer"]["rounds_per_epoch"]
    train = frames["train"]
    data = lgb.Dataset(train[features].to_numpy(np.float32), train[f"label_h{h}"].to_numpy() + 1, free_raw_data=False)
    base = {"objective": "multiclass", "num_class": 3, "verbose": -1, "seed": 0}
    boosters = {"LightGBM defaults": lgb.train(base, data, 100),
                "config, cap": lgb.train({**base, **params}, data, cap),
                "config, kept": lgb.train({**base, **params}, data, args.rounds)}  # fmt: skip
    test = first_rows(frames["test"], args.rows)
    x = test[features].to_numpy(np.float32)
    probs = torch.from_numpy(boosters["config, kept"].predict(x, num_threads=1).astype(np.float32))
    target = torch.from_numpy(test[f"label_h{h}"].to_numpy(np.int64) + 1)
    time_ns = torch.from_numpy(test["datetime"].to_numpy().astype("int64"))
    symbol = torch.from_numpy(pd.factorize(test["symbol"])[0])
    fwd = torch.from_numpy(test[f"fwd_return_h{h}"].to_numpy(np.float32, copy=True))
    k = max(1, symbol.unique().numel() // 5)

    def suite(config: TradingConfig) -> dict[str, float]:
        s = MetricSuite("test", h, BARS_PER_YEAR, config)
        s.update(probs, target, time_ns, fwd, symbol=symbol)
        return s.compute()

    def trading_only(config: TradingConfig) -> dict:
        m = trading_metrics(h, BARS_PER_YEAR, config)
        m.update(time_ns, size_positions(probs, config), fwd, symbol=symbol, score=probs[:, 2] - probs[:, 0])
        return m.compute()

    runs = {
        "trading metrics alone, per_symbol": lambda: trading_only(TradingConfig()),
        "suite, per_symbol book": lambda: suite(TradingConfig()),
        f"suite, topk book (k={k})": lambda: suite(TradingConfig(book="topk", k=k)),
        **{f"predict, {name} ({b.num_trees()} trees)": (lambda b=b: b.predict(x, num_threads=1))
           for name, b in boosters.items()},
    }
    best = {name: np.full(2, np.inf) for name in runs}
    for _ in range(args.repeats):  # alternate, keep each one's fastest
        for name, fn in runs.items():
            best[name] = np.minimum(best[name], timed(fn))
    print(f"{len(test)} rows ({test['datetime'].nunique()} timestamps x {symbol.unique().numel()} symbols) x "
          f"{len(features)} features, horizon {h}, fastest of {args.repeats}, 1 thread")
    print(f"{'':<44} {'wall ms':>8} {'cpu ms':>8}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<44} {wall * 1e3:8.1f} {cpu * 1e3:8.1f}")
    for book in ("per_symbol", "topk"):
        suite_s = best[next(k for k in best if k.startswith("suite") and book in k)]
        for name in (k for k in best if k.startswith("predict")):
            wall, cpu = suite_s / best[name]
            print(f"suite ({book}) / {name}: wall {wall:.3f}, cpu {cpu:.3f}")


if __name__ == "__main__":
    main()
