"""The leaderboard: one row per run (members and blends), as CSV, Markdown and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ensemble.io import atomic_write, write_figure

COLUMNS = {
    "val/f1_macro": "val_f1_macro", "test/f1_macro": "test_f1_macro",
    "val/log_loss": "val_log_loss", "test/log_loss": "test_log_loss",
    "test/sharpe": "test_sharpe", "test/max_drawdown": "test_max_drawdown",
    "fit/train_time_s": "train_time_s", "fit/peak_rss_mib": "peak_rss_mib",
}


def row(model: str, horizon: int, kind: str, run_dir: Path | None, status: str, error: str = "") -> dict:
    metrics = {}
    if run_dir is not None and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    out = {"model": model, "horizon": horizon, "kind": kind, "status": status}
    out.update({name: metrics.get(key) for key, name in COLUMNS.items()})
    out.update({"run_dir": str(run_dir or ""), "error": error})
    return out


def markdown(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def chart(df: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = sorted(df["horizon"].unique())
    fig, axes = plt.subplots(len(horizons), 2, figsize=(12, 3.2 * len(horizons)), squeeze=False)
    for ax_row, h in zip(axes, horizons, strict=True):
        part = df[(df.horizon == h) & (df.status == "done")].set_index("model")
        part[["val_f1_macro", "test_f1_macro"]].plot.bar(ax=ax_row[0], rot=30, title=f"h{h}: macro-F1")
        part[["test_log_loss"]].plot.bar(ax=ax_row[1], rot=30, title=f"h{h}: test log loss", color="tab:red")
        lo = part["test_log_loss"].min()
        ax_row[1].set_ylim(lo - 0.02 if pd.notna(lo) else 0, None)
    fig.tight_layout()
    return fig


def write_leaderboard(rows: list[dict], out: Path) -> pd.DataFrame:
    """Sorted by horizon, then test log loss (lower is better); the best member of each horizon is marked."""
    df = pd.DataFrame(rows).sort_values(["horizon", "test_log_loss"], na_position="last").reset_index(drop=True)
    members = df[(df.kind == "member") & (df.status == "done")]
    best = members.loc[members.groupby("horizon")["test_log_loss"].idxmin()] if not members.empty else members
    df["beats_best_member"] = [
        (r.kind == "blend" and r.status == "done" and r.horizon in set(best.horizon)
         and r.test_log_loss <= best[best.horizon == r.horizon].test_log_loss.iloc[0])
        for r in df.itertuples()
    ]
    atomic_write(out / "leaderboard.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(out / "leaderboard.md", lambda p: p.write_text(markdown(df.drop(columns=["run_dir"]))))
    if (df.status == "done").any():
        import matplotlib.pyplot as plt

        fig = chart(df)
        write_figure(out / "leaderboard.png", fig)
        plt.close(fig)
    return df
