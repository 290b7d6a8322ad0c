"""What a walk-forward leaves besides its fold runs: folds.csv, oof.parquet, metrics.json and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.ensembling.blend import split_metrics
from ensemble.errors import EnsembleError
from ensemble.io import atomic_write, record_path, write_json, write_parquet
from ensemble.metrics.config import TradingConfig
from ensemble.metrics.suite import books_on_trading
from ensemble.training.artifacts import PROB_COLUMNS

_W = 16  # a metric column's width: fits "-12.345±67.890"
SUMMARY_METRICS = {"f1_macro": "macro-F1", "log_loss": "log loss", "sharpe": "Sharpe", "sharpe_net": "Sharpe net",
                   "max_drawdown": "max DD"}


class WalkForwardError(EnsembleError):
    """A walk-forward that cannot go on or be stitched; the message names the fold and its run."""


def write_folds_csv(out: Path, rows: list[dict]) -> Path:
    """``folds.csv``: one row per fold (clock, rows per part, rows purged, refit_from, run_dir). ``run_dir`` is
    relative to ``out`` (``record_path``), so the walk-forward folder reads the same from any working directory
    and after a move."""
    frame = pd.DataFrame([{**r, "run_dir": record_path(r["run_dir"], out)} for r in rows])
    return atomic_write(out / "folds.csv", lambda p: frame.to_csv(p, index=False))


def stitch_oof(runs: dict[int, Path], expected: dict[int, int]) -> pd.DataFrame:
    """The folds' test-block predictions, each row once, with a ``fold`` column, sorted by (datetime, symbol).

    Args:
        runs: fold number -> its finished run folder.
        expected: fold number -> rows its test block holds (the fold plan's count).

    Raises:
        WalkForwardError: a fold's predictions are missing, hold another row count than its block, or two
            folds predicted the same (datetime, symbol).
    """
    parts = []
    for fold, run in sorted(runs.items()):
        path = run / "predictions" / "test.parquet"
        if not path.is_file():
            raise WalkForwardError(f"fold {fold}: {path} is missing; delete {run} and re-run to redo the fold")
        df = pd.read_parquet(path)
        if len(df) != expected[fold]:
            raise WalkForwardError(f"fold {fold}: {path} holds {len(df)} rows, its test block {expected[fold]}; "
                                   f"delete {run} and re-run to redo the fold")  # fmt: skip
        parts.append(df.assign(fold=np.int16(fold)))
    oof = pd.concat(parts, ignore_index=True).sort_values(["datetime", "symbol"], kind="stable")
    dup = oof.duplicated(["datetime", "symbol"])
    if dup.any():
        first = oof[dup].iloc[0]
        raise WalkForwardError(f"row ({first['datetime']}, {first['symbol']}) is predicted by two folds")
    return oof.reset_index(drop=True)


def fold_metrics(runs: dict[int, Path], oof: pd.DataFrame, horizon: int, trading: TradingConfig) -> pd.DataFrame:
    """One row per fold: its run's ``test/*`` metrics (its test block), keyed by metric name. A fold whose run
    booked its block with another ``trading`` section than ``trading`` (the walk-forward re-run at another cost)
    has its trading metrics booked again (``rebook``) from its rows of ``oof``."""
    rows = {}
    for fold, run in sorted(runs.items()):
        recorded = rebook(json.loads((run / "metrics.json").read_text()), "test", oof[oof["fold"] == fold], horizon,
                          trading)  # fmt: skip
        rows[fold] = {k.split("/", 1)[1]: v for k, v in recorded.items()
                      if k.startswith("test/") and isinstance(v, int | float)}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("fold")


def rebook(recorded: dict, split: str, frame: pd.DataFrame, horizon: int, trading: TradingConfig) -> dict:
    """A run's ``recorded`` metrics of ``split``, with its trading metrics (``books_on_trading``) computed again on
    its predictions ``frame`` when the run booked them with another section than ``trading`` (its
    ``trading/<split>``); the classification metrics are the run's own. ``trading/<split>`` is then ``trading``."""
    if recorded.get(f"trading/{split}") == trading.as_dict():
        return recorded
    scored = split_metrics(split, frame, frame[list(PROB_COLUMNS)].to_numpy(np.float64), horizon, trading)
    return {**recorded, **{k: v for k, v in scored.items() if books_on_trading(k)},
            f"trading/{split}": trading.as_dict()}  # fmt: skip


# per-fold columns that are settings or duplicates, not measurements: no mean/std/min for them
NOT_SPREAD = ["partial", "bars_per_year", "loss"]  # loss is log_loss under the nets' key


def summarise(oof: pd.DataFrame, per_fold: pd.DataFrame, horizon: int, trading: TradingConfig) -> dict[str, float]:
    """``oof/<metric>``: the metric suite on the stitched predictions, booked as ``trading`` says (recorded as
    ``trading/oof``, as a run records ``trading/val``); ``folds/<metric>/{mean,std,min}`` over the folds' own
    test-block metrics (``fold_metrics``; std: sample standard deviation, ddof=1)."""
    probs = oof[list(PROB_COLUMNS)].to_numpy(np.float64)
    scored = {**split_metrics("oof", oof, probs, horizon, trading), "trading/oof": trading.as_dict()}
    spread = {}
    for name in per_fold.columns.difference(NOT_SPREAD):
        values = per_fold[name].astype(float)
        spread.update({f"folds/{name}/mean": float(values.mean()), f"folds/{name}/std": float(values.std(ddof=1)),
                       f"folds/{name}/min": float(values.min())})  # fmt: skip
    return {**scored, **spread}


def write_results(out: Path, oof: pd.DataFrame, metrics: dict[str, float], settings: dict) -> None:
    """``oof.parquet`` and ``metrics.json`` (the metrics plus ``folds`` and the ``wf`` settings)."""
    write_parquet(out / "oof.parquet", oof)
    write_json(out / "metrics.json", {**metrics, "folds": int(oof["fold"].nunique()), "rows": len(oof),
                                      "wf": json.dumps(settings, sort_keys=True)})  # fmt: skip


def summary_table(per_fold: pd.DataFrame, folds_rows: list[dict], metrics: dict[str, float]) -> str:
    """A one-screen table: a line per fold (rows per part, purged, the main metrics), then the stitched
    out-of-fold line and the mean ± std over folds."""
    names = [m for m in SUMMARY_METRICS if m in per_fold.columns]
    head = f"{'fold':>4} {'train':>8} {'val':>7} {'test':>7} {'purged':>7} {'model':>6}" + "".join(
        f"{SUMMARY_METRICS[m]:>{_W}}" for m in names)  # fmt: skip
    lines = [head, "-" * len(head)]
    for row in folds_rows:
        k = row["fold"]
        model = "fit" if row["refit_from"] == k else f"<{row['refit_from']}"
        cells = "".join(f"{per_fold.at[k, m]:>{_W}.4f}" for m in names)
        lines.append(f"{k:>4} {row['train_rows']:>8} {row['val_rows']:>7} {row['test_rows']:>7} "
                     f"{row['rows_purged']:>7} {model:>6}{cells}")  # fmt: skip
    lines.append("-" * len(head))
    pad = " " * (len(head) - _W * len(names) - 14)
    stitched = [metrics.get(f"oof/{m}", float("nan")) for m in names]
    lines.append(f"{'out-of-fold':<14}{pad}" + "".join(f"{value:>{_W}.4f}" for value in stitched))
    spread = [f"{metrics[f'folds/{m}/mean']:.3f}±{metrics[f'folds/{m}/std']:.3f}" for m in names]
    lines.append(f"{'mean ± std':<14}{pad}" + "".join(f"{cell:>{_W}}" for cell in spread))
    return "\n".join(lines)


def final_line(metrics: dict[str, float]) -> str:
    """The final model's test line of the summary: the summary's metrics on the untouched test split."""
    cells = ", ".join(f"{label} {metrics[f'test/{m}']:.4f}" for m, label in SUMMARY_METRICS.items()
                      if isinstance(metrics.get(f"test/{m}"), int | float))  # fmt: skip
    return f"final model on test (trained on train, early-stopped on val): {cells}"
