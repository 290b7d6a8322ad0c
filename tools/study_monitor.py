"""Which checkpoint/early-stopping monitor should the bundled configs default to: val/log_loss or val/f1_macro?

    OMP_NUM_THREADS=1 PYTHONPATH=. python tools/study_monitor.py [--models lightgbm xgboost lstm] [--folds 3]
        [--symbols 6] [--bars 5000] [--seed 0] [--signal default] [--threads 1] [--work /tmp/study_monitor]

For each model, the bundled config is walked forward twice on the same demo splits and the same folds, once per
monitor: the early-stopping callback's ``monitor``/``mode`` and the checkpoint's ``monitor``/``mode`` (a net's
plateau scheduler follows ``checkpoint.monitor``) are both set to ``val/log_loss`` (min) or ``val/f1_macro`` (max).
Everything else (seed, rounds, epochs, patience) is the config's, so the two runs of a model train the same
trajectory and differ only in where they stop and which epoch's model predicts the fold's test block: a paired
comparison. Scores are the walk-forward's stitched out-of-fold ``oof/log_loss`` and ``oof/f1_macro``.

``top_share`` is the share of out-of-fold rows given the most-predicted class (arg-max); ``folds>95%`` counts the
folds in which one class took more than 95% of that fold's rows (a model collapsed onto one class, e.g. "flat").
``prior`` is the log loss of always predicting the out-of-fold label frequencies (an oracle constant forecast:
a model above it is worse than no model). Results land in ``<work>/results.csv``, one row per finished pair,
written as the study goes; a re-run resumes (finished folds are skipped by the walk-forward itself).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble.data.demo import make_demo_splits
from ensemble.training.artifacts import PROB_COLUMNS
from ensemble.training.config import resolve_config
from ensemble.training.threads import apply_threads, thread_overrides
from ensemble.walkforward.config import WalkForward
from ensemble.walkforward.runner import run_walkforward

CONFIGS = Path(__file__).parents[1] / "configs"
MODELS = ("lightgbm", "xgboost", "catboost", "lstm", "gru", "transformer", "nhits", "patchtst", "tft")
MONITORS = {"val/log_loss": "min", "val/f1_macro": "max"}
ONE_CLASS = 0.95  # a fold whose arg-max gives one class to more than this share of rows has collapsed


def monitored(config: dict[str, Any], monitor: str, mode: str) -> dict[str, Any]:
    """``config`` with every EarlyStopping callback and the checkpoint watching ``monitor`` in ``mode``."""
    for callback in config.get("trainer", {}).get("callbacks") or []:
        if str(callback.get("class_path", "")).endswith("EarlyStopping"):
            callback.setdefault("init_args", {}).update(monitor=monitor, mode=mode)
    config.setdefault("checkpoint", {}).update(monitor=monitor, mode=mode)
    return config


def collapse(oof: pd.DataFrame) -> tuple[float, int]:
    """(share of all rows given the most-predicted class, folds where one class took > ``ONE_CLASS`` of rows)."""
    pred = oof[list(PROB_COLUMNS)].to_numpy().argmax(axis=1)
    top = float(np.bincount(pred, minlength=len(PROB_COLUMNS)).max() / len(pred))
    per_fold = pd.Series(pred).groupby(oof["fold"].to_numpy()).agg(lambda p: p.value_counts(normalize=True).max())
    return top, int((per_fold > ONE_CLASS).sum())


def prior_log_loss(labels: pd.Series) -> float:
    """Log loss (nats) of forecasting the labels' own frequencies on every row: -sum_k f_k ln f_k."""
    freq = labels.value_counts(normalize=True).to_numpy(np.float64)
    return float(-(freq * np.log(freq)).sum())


def study_one(model: str, monitor: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Walk ``model``'s bundled config forward with ``monitor``; one result row."""
    config = resolve_config(CONFIGS / f"{model}.yaml", {"data.root": str(root), "seed_everything": args.seed,
                                                        "trainer.enable_progress_bar": False})  # fmt: skip
    if args.max_epochs is not None:
        config["trainer"]["max_epochs"] = args.max_epochs
    config = resolve_config(monitored(config, monitor, MONITORS[monitor]), thread_overrides(config, args.threads))
    out = Path(args.work) / model / monitor.split("/")[1]
    result = run_walkforward(config, WalkForward(folds=args.folds, out=str(out)), progress=False)
    top, collapsed = collapse(result.oof)
    return {"model": model, "monitor": monitor, "oof_log_loss": result.metrics["oof/log_loss"],
            "oof_f1_macro": result.metrics["oof/f1_macro"], "prior": prior_log_loss(result.oof["label"]),
            "top_share": top, "folds_collapsed": collapsed, "folds": args.folds}  # fmt: skip


def verdict(results: pd.DataFrame) -> str:
    """The table, each model's winner by log loss and by F1, and the counts."""
    lines = [results.to_string(index=False, float_format=lambda v: f"{v:.4f}"), ""]
    wins = {"log_loss": {m: 0 for m in MONITORS}, "f1_macro": {m: 0 for m in MONITORS}}
    for model, pair in results.groupby("model", sort=False):
        if len(pair) != len(MONITORS):
            continue
        by = pair.set_index("monitor")
        ll, f1 = by["oof_log_loss"].idxmin(), by["oof_f1_macro"].idxmax()
        wins["log_loss"][ll] += 1
        wins["f1_macro"][f1] += 1
        d_ll = by.at["val/log_loss", "oof_log_loss"] - by.at["val/f1_macro", "oof_log_loss"]
        d_f1 = by.at["val/log_loss", "oof_f1_macro"] - by.at["val/f1_macro", "oof_f1_macro"]
        lines.append(f"{model:<12} lower oof log loss: {ll:<13} (log_loss - f1 monitor: {d_ll:+.4f})   "
                     f"higher oof F1: {f1:<13} ({d_f1:+.4f})")  # fmt: skip
    for metric, count in wins.items():
        lines.append(f"wins on oof {metric}: " + ", ".join(f"{m} {n}" for m, n in count.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=6, help="demo symbols (the bundled demo has 10)")
    parser.add_argument("--bars", type=int, default=5000, help="demo bars per symbol (the bundled demo has 12440)")
    parser.add_argument("--signal", default="default", choices=("default", "strong", "none"))
    parser.add_argument("--seed", type=int, default=0, help="the demo data's seed and every fit's seed_everything")
    parser.add_argument("--max_epochs", type=int, default=None, help="override trainer.max_epochs (default: config)")
    parser.add_argument("--threads", type=int, default=1, help="torch, OpenMP and tree-library threads")
    parser.add_argument("--work", default="/tmp/study_monitor")
    args = parser.parse_args()
    apply_threads(args.threads)
    work = Path(args.work)
    root = work / f"demo_s{args.symbols}_b{args.bars}_{args.signal}_seed{args.seed}"
    if not (root / "train_scaled.parquet").is_file():
        make_demo_splits(root, seed=args.seed, n_symbols=args.symbols, n_bars=args.bars, signal=args.signal)
    rows = []
    for model in args.models:
        for monitor in MONITORS:
            rows.append(study_one(model, monitor, args, root))
            pd.DataFrame(rows).to_csv(work / "results.csv", index=False)
            print(f"study: {model} {monitor} oof/log_loss {rows[-1]['oof_log_loss']:.4f} "
                  f"oof/f1_macro {rows[-1]['oof_f1_macro']:.4f}", file=sys.stderr, flush=True)  # fmt: skip
    print(verdict(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
