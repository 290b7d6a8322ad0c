"""Can a demo of the same size (about 124k rows) hold one test split's gross Sharpe in [0.5, 4] at a rank IC <= 0.1?

    OMP_NUM_THREADS=1 PYTHONPATH=. python tools/study_demo_clock.py --symbols 20 --bars 6220 --signal 1.6
        [--market 1.0] [--seeds 0 1 2] [--bars-per-year 252] [--work /tmp/study_demo_clock]

The demo simulator is clock-free: a bar is a bar, and its signal is in units of the bar's ex-ante vol. So a daily
demo is the same simulation annualised at 252 bars a year instead of 8760, with a per-bar signal strong enough to
reach a believable annual Sharpe. For each seed this generates the demo with ``--symbols`` x ``--bars``, the
default signal times ``--signal`` and the market factor's variance times ``--market``, fits LightGBM with
``configs/lightgbm.yaml``'s parameters (early stopping on val log loss, patience 30 rounds, at most 300, as the
CLI's 3 epochs of 10), and scores val and test with the package's own metric suite at ``--bars-per-year``
(arg-max sizing, per-symbol book, 5 bps). One JSON line per seed; docs/benchmarks.md has the results.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

import ensemble.data.demo as demo
from ensemble.metrics.arrays import score_probabilities

CONFIG = Path(__file__).parents[1] / "configs" / "lightgbm.yaml"
LGB_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "lambda_l2")
HORIZON = 5


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    root = Path(args.work) / f"seed{seed}"
    demo.make_demo_splits(root, seed=seed, n_symbols=args.symbols, n_bars=args.bars, signal="study")
    frames = {s: pd.read_parquet(root / f"{s}_scaled.parquet") for s in ("train", "val", "test")}
    frames = {s: f[f[f"label_h{HORIZON}"].notna()].reset_index(drop=True) for s, f in frames.items()}
    features = [c for c in frames["train"].columns if c not in ("datetime", "symbol")
                and not c.startswith(("label_", "fwd_return_", "sample_weight_"))]  # fmt: skip
    params = {k: yaml.safe_load(CONFIG.read_text())["model"]["init_args"][k] for k in LGB_KEYS}

    def dataset(f: pd.DataFrame) -> lgb.Dataset:
        return lgb.Dataset(f[features].to_numpy(np.float32), f[f"label_h{HORIZON}"].to_numpy() + 1)

    booster = lgb.train({**params, "objective": "multiclass", "num_class": 3, "verbose": -1, "seed": 0,
                         "num_threads": 1}, dataset(frames["train"]), 300, valid_sets=[dataset(frames["val"])],
                        callbacks=[lgb.early_stopping(30, verbose=False)])  # fmt: skip
    out = {"seed": seed, "rounds": booster.best_iteration}
    for split in ("val", "test"):
        f = frames[split]
        probs = booster.predict(f[features].to_numpy(np.float32), num_iteration=booster.best_iteration)
        m = score_probabilities(split, probs, f[f"label_h{HORIZON}"].to_numpy() + 1,
                                f["datetime"].to_numpy().astype("int64"), f[f"fwd_return_h{HORIZON}"].to_numpy(),
                                HORIZON, args.bars_per_year, symbol=pd.factorize(f["symbol"])[0])  # fmt: skip
        out[split] = {k: round(m[f"{split}/{k}"], 3) for k in ("sharpe", "sharpe_net", "rank_ic", "ic", "turnover")}
    shutil.rmtree(root)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--bars", type=int, default=6220)
    parser.add_argument("--signal", type=float, default=1.0, help="multiple of the default demo signal")
    parser.add_argument("--market", type=float, default=1.0, help="multiple of the market factor's variance")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bars-per-year", type=float, default=252.0)
    parser.add_argument("--work", default="/tmp/study_demo_clock")
    args = parser.parse_args()
    demo.SIGNALS["study"] = tuple(b * args.signal for b in demo.SIGNAL_B)  # the study's own strength, by name
    demo.MKT_VAR *= args.market
    for seed in args.seeds:
        print(json.dumps({"symbols": args.symbols, "bars": args.bars, "signal": args.signal, "market": args.market,
                          **one_seed(args, seed)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
