"""The leaderboard: one row per run (members and blends), as CSV, Markdown and a PNG chart.

How it judges (DESIGN.md §9): rows are ranked by **val** log loss, and a blend's best member is the member
with the lowest val log loss; test is reported, never used to choose. Blend weights are fitted on val, so
a blend's val log loss is in-sample and flatters it (the ``val_in_sample`` column says so); ranking on
out-of-fold predictions comes with walk-forward.

Runs are compared on **the same rows**: a member with a shorter window predicts more rows than one with a
longer window, and a blend only the rows all its members share, so every finished run of a horizon is
re-scored from its predictions parquet on the rows all of them predicted (``*_log_loss_shared``), never
taken from its own metrics.json (a blend that is just one member would otherwise "beat" it). Ranking and the
best member use val; ``beats_best_member`` is the test outcome, strict, reported only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.ensembling.methods import log_loss
from ensemble.io import atomic_write, write_figure

COLUMNS = {
    "val/f1_macro": "val_f1_macro", "test/f1_macro": "test_f1_macro",
    "val/log_loss": "val_log_loss", "test/log_loss": "test_log_loss",
    "test/sharpe": "test_sharpe", "test/max_drawdown": "test_max_drawdown",
    "fit/train_time_s": "train_time_s", "fit/peak_rss_mib": "peak_rss_mib",
}
KEYS = ["datetime", "symbol"]
PROBS = ["prob_short", "prob_flat", "prob_long"]
NOTE = ("Sorted by val_log_loss_shared: val log loss on the rows every finished run of the horizon predicted. "
        "A blend's val log loss is in-sample (its weights were fitted on val). best_member: the blend's member "
        "with the lowest val_log_loss_shared; beats_best_member: the blend's test_log_loss_shared is strictly "
        "below that member's. Test is reported, never used to choose.")


def row(model: str, horizon: int, kind: str, run_dir: Path | None, status: str, error: str = "") -> dict:
    """One leaderboard row; metrics come from ``run_dir/metrics.json`` when the run finished."""
    metrics = {}
    if run_dir is not None and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    out = {"model": model, "horizon": horizon, "kind": kind, "status": status}
    out.update({name: metrics.get(key) for key, name in COLUMNS.items()})
    out.update({"run_dir": str(run_dir or ""), "error": error})
    return out


def _predictions(run_dir: str, split: str) -> pd.DataFrame:
    path = Path(run_dir) / "predictions" / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the leaderboard compares runs on their predictions")
    return pd.read_parquet(path, columns=[*KEYS, "label", *PROBS])


def shared_row_log_loss(run_dirs: list[str], split: str) -> dict[str, float]:
    """Log loss (nats) of each run on the ``split`` rows (datetime, symbol) that every run predicted.

    Raises ``ValueError`` naming the runs when they share no row or disagree on a label."""
    frames = {r: _predictions(r, split) for r in run_dirs}
    shared = None
    for df in frames.values():
        shared = df[[*KEYS, "label"]] if shared is None else shared.merge(df[KEYS], on=KEYS)
    if shared is None or shared.empty:
        raise ValueError(f"runs share no {split} rows: {run_dirs}")
    out = {}
    for run, df in frames.items():
        joined = shared.merge(df, on=KEYS, suffixes=("_first", ""))
        if not (joined["label"].to_numpy() == joined["label_first"].to_numpy()).all():
            raise ValueError(f"{run}: its {split} labels differ from {run_dirs[0]}'s on the same rows")
        out[run] = log_loss(joined[PROBS].to_numpy(np.float64), joined["label"].to_numpy().astype(int) + 1)
    return out


def _same_row_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add val/test log loss on each horizon's shared rows, the best member per blend, and beats_best_member."""
    df = df.assign(val_log_loss_shared=np.nan, test_log_loss_shared=np.nan, best_member="", beats_best_member=False)
    for _, part in df[df.status == "done"].groupby("horizon"):
        runs = part.run_dir.tolist()
        for split in ("val", "test"):
            scores = shared_row_log_loss(runs, split)
            df.loc[part.index, f"{split}_log_loss_shared"] = [scores[r] for r in runs]
        done = df.loc[part.index].set_index("run_dir")
        for i, r in part[part.kind == "blend"].iterrows():
            members = json.loads((Path(r.run_dir) / "blend.json").read_text())["members"]
            members = [m for m in members if m in done.index]
            if not members:
                continue
            best = min(members, key=lambda m: done.at[m, "val_log_loss_shared"])  # chosen on val, never on test
            df.at[i, "best_member"] = done.at[best, "model"]
            blend_test, best_test = done.at[r.run_dir, "test_log_loss_shared"], done.at[best, "test_log_loss_shared"]
            df.at[i, "beats_best_member"] = bool(blend_test < best_test)  # strict: a tie is not a win
    return df


def markdown(df: pd.DataFrame, note: str = "") -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.4f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def chart(df: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = sorted(df["horizon"].unique())
    fig, axes = plt.subplots(len(horizons), 2, figsize=(12, 3.2 * len(horizons)), squeeze=False)
    for ax_row, h in zip(axes, horizons, strict=True):
        part = df[(df.horizon == h) & (df.status == "done")].set_index("model")
        part[["val_f1_macro", "test_f1_macro"]].plot.bar(ax=ax_row[0], rot=30, title=f"h{h}: macro-F1")
        part[["val_log_loss", "test_log_loss"]].plot.bar(ax=ax_row[1], rot=30,
                                                         title=f"h{h}: log loss (blends' val is in-sample)")
        lo = part[["val_log_loss", "test_log_loss"]].min().min()
        ax_row[1].set_ylim(lo - 0.02 if pd.notna(lo) else 0, None)
    fig.tight_layout()
    return fig


def write_leaderboard(rows: list[dict], out: Path) -> pd.DataFrame:
    """Write leaderboard.{csv,md,png} under ``out``; rows sorted by horizon, then val log loss on the rows
    every finished run of that horizon predicted (lower first). Returns the table as written."""
    df = pd.DataFrame(rows)
    df["val_in_sample"] = df["kind"] == "blend"
    df = _same_row_columns(df).sort_values(["horizon", "val_log_loss_shared"], na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    atomic_write(out / "leaderboard.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(out / "leaderboard.md", lambda p: p.write_text(markdown(df.drop(columns=["run_dir"]), NOTE)))
    if (df.status == "done").any():
        import matplotlib.pyplot as plt

        fig = chart(df)
        write_figure(out / "leaderboard.png", fig)
        plt.close(fig)
    return df


WALKFORWARD_NOTE = ("Walk-forward cells: sorted by oof_log_loss, the log loss of the stitched out-of-fold predictions "
                    "(every eligible row of the test blocks once; each fold trained only on its past, purged). "
                    "*_fold_std: the sample std of the metric over the folds' test blocks. The test split is not "
                    "used unless wf span is all.")  # fmt: skip


def write_walkforward_leaderboard(rows: list[dict], out: Path) -> pd.DataFrame:
    """leaderboard.{csv,md} of walk-forward cells: by horizon, then out-of-fold log loss (lower first)."""
    df = pd.DataFrame(rows).sort_values(["horizon", "oof_log_loss"], na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    atomic_write(out / "leaderboard.csv", lambda p: df.to_csv(p, index=False))
    text = markdown(df.drop(columns=["run_dir"]), WALKFORWARD_NOTE)
    atomic_write(out / "leaderboard.md", lambda p: p.write_text(text))
    return df
