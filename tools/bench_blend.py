"""Cost of fitting every blend method on production-size out-of-fold predictions, against one LightGBM fit.

    python tools/bench_blend.py [--members 9] [--rows 87080] [--symbols 10] [--folds 4] [--repeats 3]
                                [--root data/demo] [--no-lightgbm] [--member-walkforward]

Two measurements per method. *plain*: one ``fit`` on all rows (a val blend's work). *out-of-fold*: what
``ensemble blend`` / ``ensemble experiment`` run for one method on walk-forward members after reading their files
(``ensemble.ensembling.oof.fit_oof_blend`` minus the I/O): the bar clock (``forward.Clock.build``), the forward-only
fits of folds 2..F (``forward.fit_method``; stacked: every C of its grid on every fold, C chosen by nested forward
validation), the final fit on all rows, and the final blend's test predictions. The out-of-fold rows are laid out
as a walk-forward's: ``--symbols`` symbols on one hourly clock, ``--folds`` contiguous test blocks, horizon 5.

The predictions are synthetic, shaped like a walk-forward run's stitched ``oof.parquet`` over the demo's
train split: ``--members`` x ``--rows`` x 3 probabilities of members of weak, differing skill and
calibration (log loss near the demo's ~1.06), labels drawn from a hidden posterior. Each method is
fitted ``--repeats`` times; the fastest wall and CPU time is kept (the machines are shared and noisy).

The yardstick is one LightGBM fit on the demo's train split (87,080 rows x 107 features, horizon 5) with
``configs/lightgbm.yaml``'s parameters for its full 150 rounds and no per-epoch evaluation: the cheapest
member's fit, without the package's val passes (which only make a real member slower). Early stopping can
stop a member sooner; the printed per-round time lets the reader scale it. ``--member-walkforward`` also times
what that member really costs a user of out-of-fold blends: ``ensemble walkforward`` of LightGBM over the same
number of folds of the demo (the run whose ``oof.parquet`` a blend is fitted on), CPU of its child process.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from ensemble.ensembling.blend import make_method
from ensemble.ensembling.forward import Clock, fit_method
from ensemble.ensembling.methods import METHODS, CaruanaBlend, log_loss

CONFIG = Path(__file__).parents[1] / "configs" / "lightgbm.yaml"
LGB_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "bagging_fraction", "bagging_freq",
            "feature_fraction", "lambda_l2", "max_bin")


def synthetic_oof(members: int, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(members, rows, 3) float64 probabilities and (rows,) labels 0..2."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 0.35, (rows, 3))
    truth = np.exp(signal) / np.exp(signal).sum(axis=1, keepdims=True)
    y = (rng.random(rows)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    out = np.empty((members, rows, 3))
    for m in range(members):
        sharp = rng.uniform(0.5, 2.0)  # under- to over-confident
        logits = sharp * (signal + rng.normal(0, rng.uniform(0.2, 0.6), (rows, 3))) + rng.normal(0, 0.1, 3)
        out[m] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return out, y


def walkforward_layout(rows: int, symbols: int, folds: int, test_rows: int) -> dict[str, np.ndarray]:
    """Out-of-fold rows as a walk-forward stitches them (sorted by time, then symbol; ``folds`` contiguous test
    blocks of whole bars) and the test split's rows after them: symbol, time (int64 ns), fold."""
    bars, test_bars = rows // symbols, test_rows // symbols
    start = np.datetime64("2020-01-01T00:00", "ns").astype(np.int64)
    hour = 3_600_000_000_000
    bar = np.repeat(np.arange(bars + test_bars), symbols)
    names = np.tile(np.array([f"S{i:02d}" for i in range(symbols)]), bars + test_bars)
    n = bars * symbols
    return {"symbol": names[:n], "time": start + bar[:n] * hour, "fold": (bar[:n] * folds // bars + 1).astype(np.int16),
            "test_symbol": names[n:], "test_time": start + bar[n:] * hour}  # fmt: skip


def fit_out_of_fold(method: str, probs: np.ndarray, y: np.ndarray, test_probs: np.ndarray,
                    layout: dict[str, np.ndarray], horizon: int = 5) -> object:  # fmt: skip
    """One method fitted out-of-fold as ``fit_oof_blend`` fits it (no files): clock, forward fits, final fit, test
    predictions; the final blend."""
    clock = Clock.build(layout["symbol"], layout["time"], horizon, horizon, layout["test_symbol"],
                        layout["test_time"])  # fmt: skip
    fitted = fit_method(method, make_method(method), probs, y, layout["fold"], clock, int(layout["test_time"].min()))
    fitted.final.predict_proba(test_probs)
    return fitted.final


def timed(fn) -> np.ndarray:
    """(wall, cpu) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def walkforward_member(root: Path, folds: int) -> tuple[np.ndarray, int]:
    """(wall, cpu) seconds of the cheapest real member of an out-of-fold blend, as the package fits it:
    ``ensemble walkforward`` of ``configs/lightgbm.yaml`` over ``folds`` folds of the demo (fold fits with their
    val passes, the final model, the artifacts), in a child process; and the out-of-fold rows it wrote."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ensemble.cli", "walkforward", "--config", str(CONFIG.resolve()),
                        "--data.root", str(root.resolve()), "--wf.folds", str(folds), "--wf.out", f"{tmp}/wf",
                        "--quiet"], check=True, cwd=tmp, stdout=subprocess.DEVNULL)  # fmt: skip
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = len(pd.read_parquet(Path(tmp) / "wf" / "oof.parquet", columns=["symbol"]))
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return np.array([wall, cpu]), rows


def lightgbm_fit(root: Path, horizon: int = 5) -> tuple[np.ndarray, int]:
    """(wall, cpu) seconds of one full-length LightGBM fit on the demo's train split, and its rounds."""
    import lightgbm as lgb
    import pandas as pd

    from ensemble.data.demo import make_demo_splits

    if not (root / "train_scaled.parquet").exists():
        make_demo_splits(root)
    train = pd.read_parquet(root / "train_scaled.parquet")
    train = train[train[f"label_h{horizon}"].notna()]
    features = [c for c in train.columns if c not in ("datetime", "symbol")
                and not c.startswith(("label_", "fwd_return_", "sample_weight_"))]
    cfg = yaml.safe_load(CONFIG.read_text())
    params = {k: cfg["model"]["init_args"][k] for k in LGB_KEYS}
    rounds = cfg["trainer"]["max_epochs"] * cfg["trainer"]["rounds_per_epoch"]
    x, y = train[features].to_numpy(np.float32), train[f"label_h{horizon}"].to_numpy() + 1
    print(f"LightGBM: {len(x):,} rows x {len(features)} features, {rounds} rounds")
    return timed(lambda: lgb.train({**params, "objective": "multiclass", "num_class": 3, "verbose": -1,
                                    "seed": 0}, lgb.Dataset(x, y), rounds)), rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=9)
    parser.add_argument("--rows", type=int, default=87_080)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--test-rows", type=int, default=18_660)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("data/demo"))
    parser.add_argument("--no-lightgbm", action="store_true", help="skip the LightGBM yardstick")
    parser.add_argument("--member-walkforward", action="store_true",
                        help="also time the cheapest real member: ensemble walkforward of LightGBM (~2 min)")
    args = parser.parse_args()
    layout = walkforward_layout(args.rows, args.symbols, args.folds, args.test_rows)
    n = len(layout["time"])
    every, labels = synthetic_oof(args.members, n + len(layout["test_time"]))
    probs, y, test_probs = every[:, :n], labels[:n], every[:, n:]
    print(f"{args.members} members x {n:,} rows x 3 ({args.symbols} symbols, {args.folds} folds, "
          f"{test_probs.shape[1]:,} test rows); member log loss "
          f"{min(log_loss(p, y) for p in probs):.4f} (best) .. {max(log_loss(p, y) for p in probs):.4f}")
    makers = dict(METHODS)
    makers["caruana, 20 bags of half"] = lambda: CaruanaBlend(bags=20, bag_fraction=0.5)
    best = {name: np.full(2, np.inf) for name in makers} | {f"oof {name}": np.full(2, np.inf) for name in METHODS}
    fitted = {}
    for _ in range(args.repeats):  # alternate, keep each one's fastest
        for name, make in makers.items():
            model = make()
            best[name] = np.minimum(best[name], timed(lambda m=model: m.fit(probs, y)))
            fitted[name] = model
        for name in METHODS:
            best[f"oof {name}"] = np.minimum(best[f"oof {name}"], timed(
                lambda m=name: fitted.__setitem__(f"oof {m}", fit_out_of_fold(m, probs, y, test_probs, layout))))
    lgb_time = None
    if not args.no_lightgbm:
        lgb_time, rounds = lightgbm_fit(args.root)
    header = f"{'method':<34} {'wall s':>8} {'cpu s':>8} {'log loss':>9}"
    print(header + (f" {'wall/LGBM':>10} {'cpu/LGBM':>9}" if lgb_time is not None else ""))
    rows = [*((k, v) for k, v in best.items() if not k.startswith("oof")),
            (f"all {len(METHODS)} methods, plain (sum)", sum(best[m] for m in METHODS)),
            *((k, v) for k, v in best.items() if k.startswith("oof")),
            (f"all {len(METHODS)} methods, out-of-fold (sum)", sum(best[f"oof {m}"] for m in METHODS))]
    if lgb_time is not None:
        rows.append((f"LightGBM fit, {rounds} rounds", lgb_time))
    for name, (wall, cpu) in rows:
        loss = f"{log_loss(fitted[name].predict_proba(probs), y):9.4f}" if name in fitted else " " * 9
        ratio = f" {wall / lgb_time[0]:10.1%} {cpu / lgb_time[1]:9.1%}" if lgb_time is not None else ""
        print(f"{name:<34} {wall:8.3f} {cpu:8.3f} {loss}{ratio}")
    if args.member_walkforward:
        member, rows = walkforward_member(args.root, args.folds)
        blends = sum(best[f"oof {m}"] for m in METHODS)
        print(f"LightGBM member, ensemble walkforward ({args.folds} folds, {rows:,} out-of-fold rows): "
              f"{member[0]:.1f} s wall, {member[1]:.1f} CPU-s; all {len(METHODS)} methods out-of-fold take "
              f"{blends[0] / member[0]:.1%} of its wall, {blends[1] / member[1]:.1%} of its CPU")


if __name__ == "__main__":
    main()
