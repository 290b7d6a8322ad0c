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
from ensemble.errors import EnsembleError
from ensemble.experiments.baselines import BASELINES, baseline_metrics
from ensemble.experiments.baselines import KIND as BASELINE
from ensemble.io import atomic_write, locate, record_path, write_figure
from ensemble.metrics.suite import INTEGER_METRICS, metric_mode
from ensemble.training.results import format_cell, render

COLUMNS = {
    "val/f1_macro": "val_f1_macro", "test/f1_macro": "test_f1_macro",
    "val/log_loss": "val_log_loss", "test/log_loss": "test_log_loss",
    "test/sharpe": "test_sharpe", "test/sharpe_net": "test_sharpe_net", "test/psr": "test_psr",
    "test/turnover": "test_turnover", "test/break_even_bps": "test_break_even_bps",
    "test/max_drawdown": "test_max_drawdown", "val/ic": "val_ic", "test/ic": "test_ic",
    "test/rank_ic": "test_rank_ic", "test/icir": "test_icir",
    "fit/train_time_s": "train_time_s", "fit/peak_rss_mib": "peak_rss_mib",
    "val/partial": "val_partial",
}
KEYS = ["datetime", "symbol"]
PROBS = ["prob_short", "prob_flat", "prob_long"]
NOTE = ("Sorted by val_log_loss_shared: val log loss on the rows every finished run of the horizon predicted. "
        "fit_on val: the blend was fitted on val, which also early-stopped its members. "
        "A blend's val log loss is in-sample (its weights were fitted on val). best_member: the blend's member "
        "with the lowest val_log_loss_shared; beats_best_member: the blend's test_log_loss_shared is strictly "
        "below that member's. Test is reported, never used to choose. Baselines (kind baseline, never chosen): "
        "uniform (p = 1/3 each, log loss ln 3 = 1.0986), class_prior (always the train split's class shares; its "
        "F1 from their arg-max) and random_prior (labels drawn at random in those shares: expected F1 in closed "
        "form, the prior's log loss), scored on the same rows; a run ranked below them does worse than a guess. "
        "val_partial: val metrics of part of the split (trainer.limit_val_batches: a fraction under 1.0, or fewer "
        "batches than the split has).")
# the columns the terminal shows of a walk-forward experiment's board (those it has), in this order
WALKFORWARD_TERMINAL = ["model", "horizon", "kind", "status", "folds", "oof_log_loss_shared", "test_log_loss_shared",
                        "oof_f1_macro", "test_f1_macro", "test_sharpe_net", "test_rank_ic", "dsr", "champion", "oracle",
                        "test_minus_oracle", "best_member", "beats_best_member", "fit_on"]  # fmt: skip
# the columns the terminal shows, in this order: net Sharpe beside gross, net being the number a decision rests on,
# and the rank IC, the first number a quant reads of a signal
TERMINAL = ["model", "horizon", "kind", "status", "val_log_loss_shared", "test_log_loss_shared",
            "val_f1_macro", "test_f1_macro", "test_sharpe", "test_sharpe_net", "test_rank_ic", "best_member",
            "beats_best_member", "fit_on"]  # fmt: skip


def row(model: str, horizon: int, kind: str, run_dir: Path | None, status: str, error: str = "",
        metrics: dict | None = None) -> dict:  # fmt: skip
    """One leaderboard row; metrics are ``metrics`` when given (a baseline's), else ``run_dir/metrics.json``
    when the run finished."""
    metrics = dict(metrics or {})
    if not metrics and run_dir is not None and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    out = {"model": model, "horizon": horizon, "kind": kind, "status": status}
    out.update({name: metrics.get(key) for key, name in COLUMNS.items()})
    out.update({"fit_on": metrics.get("fit_on", ""), "run_dir": str(run_dir or ""), "error": error})  # blends: val
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
            if split == "test" and not all((Path(r) / "predictions" / "test.parquet").is_file() for r in runs):
                continue  # a run fitted with --test false: no test column for this horizon, never a crash
            scores = shared_row_log_loss(runs, split)
            df.loc[part.index, f"{split}_log_loss_shared"] = [scores[r] for r in runs]
        done = df.loc[part.index].set_index("run_dir")
        row_of = {Path(r).resolve(): r for r in done.index}  # blend.json names members relative to itself
        for i, r in part[part.kind == "blend"].iterrows():
            recorded = json.loads((Path(r.run_dir) / "blend.json").read_text())["members"]
            found = [locate(m, Path(r.run_dir)) for m in recorded]
            members = [row_of[f.resolve()] for f in found if f is not None and f.resolve() in row_of]
            if not members:
                continue
            best = min(members, key=lambda m: done.at[m, "val_log_loss_shared"])  # chosen on val, never on test
            df.at[i, "best_member"] = done.at[best, "model"]
            blend_test, best_test = done.at[r.run_dir, "test_log_loss_shared"], done.at[best, "test_log_loss_shared"]
            df.at[i, "beats_best_member"] = bool(blend_test < best_test)  # strict: a tie is not a win
    return df


def _baselines(df: pd.DataFrame) -> pd.DataFrame:
    """The baseline rows of every horizon with a finished run, scored on that horizon's shared rows (their log
    loss is already on those rows); a horizon whose baselines cannot be built gets failed rows naming why."""
    rows = []
    for horizon, part in df[(df.status == "done") & (df.kind != BASELINE)].groupby("horizon"):
        try:
            scored = baseline_metrics(int(horizon), part.run_dir.tolist())
        except EnsembleError as err:
            rows += [row(name, int(horizon), BASELINE, None, "failed", str(err)) for name in BASELINES]
            continue
        rows += [row(name, int(horizon), BASELINE, None, "done", metrics=m) for name, m in scored.items()]
    if not rows:
        return pd.DataFrame(columns=df.columns)
    out = pd.DataFrame(rows)
    return out.assign(val_in_sample=False, val_log_loss_shared=out["val_log_loss"],
                      test_log_loss_shared=out["test_log_loss"], best_member="", beats_best_member=False)


def terminal_table(df: pd.DataFrame, columns: list[str] = TERMINAL) -> str:
    """The leaderboard as the terminal shows it (those of ``columns`` it has; ``TERMINAL``, or
    ``WALKFORWARD_TERMINAL`` for a walk-forward experiment's), in the one result-table format."""
    columns = [c for c in columns if c in df.columns]
    cells = [[format_cell(c, v.item() if isinstance(v, np.generic) else v) for c, v in zip(columns, r, strict=True)]
             for r in df[columns].itertuples(index=False)]  # fmt: skip
    return render(columns, cells)


# columns of whole numbers (counts): a column of them with an empty cell is float in pandas, shown as integers
INTEGER_COLUMNS = frozenset({"folds", "n_trials", "pbo_partitions"})


def _integer(column: str) -> bool:
    return column in INTEGER_COLUMNS or column.split("_", 1)[-1] in INTEGER_METRICS


def write_csv(df: pd.DataFrame, out: Path) -> Path:
    """``out/leaderboard.csv``: every ``run_dir`` inside the experiment folder ``out`` relative to it
    (``io.record_path``: the folder can move, and be read from any working directory), and count columns as
    integers (pandas' nullable Int64: ``4``, empty where missing, never ``4.0``)."""
    table = df.copy()
    table["run_dir"] = [record_path(r, out) if isinstance(r, str) and r else "" for r in table["run_dir"]]
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce") if _integer(column) else None
        if values is not None and values.notna().eq(table[column].notna()).all():
            whole = values.dropna()
            if (whole == whole.round()).all():  # bars_per_year may be fractional: left as it is then
                table[column] = values.astype("Int64")
    return atomic_write(out / "leaderboard.csv", lambda p: table.to_csv(p, index=False))


def markdown(df: pd.DataFrame, note: str = "") -> str:
    """``df`` as a Markdown table (floats to 4 decimals, counts as integers, empty for NaN/None), ``note`` below."""
    def cell(column: str, v) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.0f}" if _integer(column) else f"{v:.4f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(df.columns, r, strict=True)) + " |"
              for r in df.itertuples(index=False)]  # fmt: skip
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


# how the chart sets kinds apart: bar hatch and, for baselines, grey bars
_HATCH = {"member": "", "blend": "//", BASELINE: ".."}
CHANCE_F1 = 1 / 3  # macro-F1 of guessing each class at its own share: F1_c = f_c, mean over 3 classes = 1/3
UNIFORM_LOG_LOSS = float(np.log(3))  # p = 1/3 for every class


def _bars(ax, part: pd.DataFrame, columns: tuple[str, str], chance: float, chance_label: str) -> None:
    """Val and test bars per run, blends hatched, baselines grey and dotted; a dashed chance line; the value
    axis spans the data and the chance line, not from 0 (differences of a few hundredths must show)."""
    x = np.arange(len(part))
    for offset, column, color in ((-0.2, columns[0], "C0"), (0.2, columns[1], "C1")):
        values = part[column].astype(float).to_numpy()
        for xi, value, kind in zip(x, values, part["kind"], strict=True):
            if np.isfinite(value):
                ax.bar(xi + offset, value, width=0.4, color="0.75" if kind == BASELINE else color,
                       hatch=_HATCH.get(kind, ""), edgecolor="black", linewidth=0.5)  # fmt: skip
    ax.axhline(chance, color="black", linestyle="--", linewidth=1, label=chance_label)
    shown = np.append(part[list(columns)].astype(float).to_numpy().ravel(), chance)
    shown = shown[np.isfinite(shown)]
    lo, hi = shown.min(), shown.max()
    pad = max(0.1 * (hi - lo), 0.01)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(x, part["model"], rotation=30, ha="right")
    ax.set_xlabel("run (member, blend or baseline)")


def _legend(ax, chance_label: str, first: str = "val") -> None:
    """The chart's legend, in two columns above the bars: the top of the value axis is raised to make room, so
    it never covers a bar (``loc="best"`` did, on a panel full of bars)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="C0", edgecolor="black", label=first),
               Patch(facecolor="C1", edgecolor="black", label="test"),
               Patch(facecolor="white", edgecolor="black", hatch=_HATCH["blend"], label="blend"),
               Patch(facecolor="0.75", edgecolor="black", hatch=_HATCH[BASELINE], label="baseline (a guess)"),
               Line2D([], [], color="black", linestyle="--", label=chance_label)]  # fmt: skip
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.5 * (hi - lo))
    ax.legend(handles=handles, fontsize=7, loc="upper right", ncol=2)


def chart(df: pd.DataFrame):
    """One row of panels per horizon: macro-F1 (val, test; own rows), log loss (val, test; the horizon's
    shared rows) and the information coefficient (val, test) of every finished run, blends and baselines set
    apart. Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = sorted(df["horizon"].unique())
    fig, axes = plt.subplots(len(horizons), 3, figsize=(18, 3.8 * len(horizons)), squeeze=False)
    for (f1_ax, loss_ax, ic_ax), h in zip(axes, horizons, strict=True):
        part = df[(df.horizon == h) & (df.status == "done")]
        chance = f"chance: a guess at the class shares (macro-F1 {CHANCE_F1:.3f})"
        _bars(f1_ax, part, ("val_f1_macro", "test_f1_macro"), CHANCE_F1, chance)
        f1_ax.set_title(f"h={h}: macro-F1 (higher is better)", fontsize=9)
        f1_ax.set_ylabel("macro-F1 (0 to 1)")
        _legend(f1_ax, chance)
        uniform = f"uniform guess: ln 3 = {UNIFORM_LOG_LOSS:.4f}"
        _bars(loss_ax, part, ("val_log_loss_shared", "test_log_loss_shared"), UNIFORM_LOG_LOSS, uniform)
        loss_ax.set_title(f"h={h}: log loss on shared rows (lower is better; blends' val in-sample)", fontsize=9)
        loss_ax.set_ylabel("log loss (nats per row)")
        _legend(loss_ax, uniform)
        no_skill = "no skill: IC 0"
        _bars(ic_ax, part, ("val_ic", "test_ic"), 0.0, no_skill)
        ic_ax.set_title(f"h={h}: IC of p_long - p_short with fwd_return (higher is better)", fontsize=9)
        ic_ax.set_ylabel("IC (mean per-timestamp correlation)")
        if part[["val_ic", "test_ic"]].isna().all().all():  # one symbol: no cross-section to correlate across
            ic_ax.text(0.5, 0.7, "IC undefined: fewer than 3 symbols per timestamp", ha="center", va="center",
                       transform=ic_ax.transAxes, fontsize=9)  # fmt: skip
        _legend(ic_ax, no_skill)
    fig.suptitle("Leaderboard: val and test per horizon (val chose every checkpoint; test is reported, never used)")
    fig.tight_layout()
    return fig


def write_leaderboard(rows: list[dict], out: Path) -> pd.DataFrame:
    """Write leaderboard.{csv,md,png} under ``out``; rows sorted by horizon, then val log loss on the rows
    every finished run of that horizon predicted (lower first). Returns the table as written."""
    df = pd.DataFrame(rows)
    df["val_in_sample"] = df["kind"] == "blend"
    df = _same_row_columns(df)
    baselines = _baselines(df)
    df = pd.concat([df, baselines], ignore_index=True) if len(baselines) else df
    df = df.sort_values(["horizon", "val_log_loss_shared"], na_position="last", kind="stable").reset_index(drop=True)
    write_csv(df, out)
    atomic_write(out / "leaderboard.md", lambda p: p.write_text(markdown(df.drop(columns=["run_dir"]), NOTE)))
    if (df.status == "done").any():
        import matplotlib.pyplot as plt

        fig = chart(df)
        write_figure(out / "leaderboard.png", fig)
        plt.close(fig)
    return df


WALKFORWARD_NOTE = ("Walk-forward cells and out-of-fold blends: sorted by {key} ({order}), the champion metric of "
                    "the stitched out-of-fold predictions on the rows every candidate of the horizon has (a blend's "
                    "start at fold 2); oof_log_loss_shared: their log loss there; oof_log_loss: on the cell's own "
                    "rows. champion: the candidate chosen by the "
                    "experiment's champion_metric on those shared rows; oracle: the member best on test, a choice "
                    "made with hindsight; test_minus_oracle (champion's row): the champion's test log loss minus "
                    "the oracle's on the shared rows, [test_minus_oracle_lo, _hi] its 90% block-bootstrap interval. "
                    "best_member (blend rows): the member best on the champion metric out of fold; "
                    "beats_best_member: the blend's test_log_loss_shared is strictly below that member's. "
                    "test_sharpe, test_sharpe_net: annualised, gross and net of costs, of the final model or blend "
                    "on test. dsr: deflated Sharpe ratio of the candidate's net out-of-fold book against n_trials "
                    "(grid cells, blends and tuned configs' Optuna trials); pbo: probability of backtest overfitting "
                    "of the horizon's choice, CSCV over pbo_partitions blocks (empty: too few candidates or "
                    "timestamps). *_fold_std: the sample std of the metric over the folds' test blocks. Baselines "
                    "(kind baseline, never chosen): uniform, class_prior (the train class shares) and random_prior "
                    "(labels drawn in those shares: expected F1 in closed form, the prior's log loss).")  # fmt: skip


def write_walkforward_leaderboard(rows: list[dict], out: Path, metric: str = "oof/log_loss") -> pd.DataFrame:
    """leaderboard.{csv,md,png} of walk-forward cells (and blends, baselines): by horizon, then the champion
    ``metric`` on the candidates' shared rows when the champion columns are there (else on each cell's own rows),
    best first (lower first for a loss, higher first otherwise, as ``metric_mode`` says). The PNG is
    written on every run with finished candidates, so it never shows an earlier run's champion."""
    df = pd.DataFrame(rows)
    name = metric.split("/", 1)[1]
    key = f"oof_{name}_shared" if f"oof_{name}_shared" in df.columns else f"oof_{name}"
    lower = metric_mode(name) == "min"
    df = df.sort_values(["horizon", key], ascending=[True, lower], na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    write_csv(df, out)
    note = WALKFORWARD_NOTE.format(key=key, order="lower first" if lower else "higher first")
    text = markdown(df.drop(columns=["run_dir"]), note)
    atomic_write(out / "leaderboard.md", lambda p: p.write_text(text))
    if "oof_log_loss_shared" in df.columns and (df.status == "done").any():
        import matplotlib.pyplot as plt

        fig = walkforward_chart(df)
        write_figure(out / "leaderboard.png", fig)
        plt.close(fig)
    return df


DSR_LINE = 0.95  # a DSR above it: the Sharpe beats the luck of n_trials tries at the 95% level


def walkforward_chart(df: pd.DataFrame):
    """One row of panels per horizon: log loss (out-of-fold and test, shared rows), macro-F1 (out-of-fold and
    test) and the DSR of every finished candidate, the champion starred and the oracle named in the tick
    labels, the horizon's PBO and trial count in the DSR panel's title. Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = sorted(df["horizon"].unique())
    fig, axes = plt.subplots(len(horizons), 3, figsize=(18, 5 * len(horizons)), squeeze=False)
    for (loss_ax, f1_ax, dsr_ax), h in zip(axes, horizons, strict=True):
        part = df[(df.horizon == h) & (df.status == "done")].copy()
        label = part["model"].astype(str)
        label = label.where(~part["champion"].fillna(False).astype(bool), "\u2605 " + label + " (champion)")
        part["model"] = label.where(~part["oracle"].fillna(False).astype(bool), label + " (oracle)")
        uniform = f"uniform guess: ln 3 = {UNIFORM_LOG_LOSS:.4f}"
        _bars(loss_ax, part, ("oof_log_loss_shared", "test_log_loss_shared"), UNIFORM_LOG_LOSS, uniform)
        loss_ax.set_title(f"h={h}: log loss on the candidates' shared rows (lower is better)\n"
                          "\u2605 champion: chosen out-of-fold; oracle: best member on test, with hindsight",
                          fontsize=9)  # fmt: skip
        loss_ax.set_ylabel("log loss (nats per row)")
        _legend(loss_ax, uniform, "out-of-fold")
        chance = f"chance: a guess at the class shares (macro-F1 {CHANCE_F1:.3f})"
        _bars(f1_ax, part, ("oof_f1_macro", "test_f1_macro"), CHANCE_F1, chance)
        f1_ax.set_title(f"h={h}: macro-F1, out-of-fold and test (higher is better)", fontsize=9)
        f1_ax.set_ylabel("macro-F1 (0 to 1)")
        _legend(f1_ax, chance, "out-of-fold")
        ranked = part[part.kind != BASELINE]
        x = np.arange(len(ranked))
        dsr_ax.bar(x, ranked["dsr"].astype(float).fillna(0.0), color="C2", edgecolor="black", linewidth=0.5,
                   hatch=None)  # fmt: skip
        dsr_ax.axhline(DSR_LINE, color="black", linestyle="--", linewidth=1, label=f"DSR {DSR_LINE}")
        dsr_ax.set_ylim(0, 1.25)  # room for the legend above the bars
        dsr_ax.set_xticks(x, ranked["model"], rotation=30, ha="right")
        dsr_ax.set_xlabel("candidate (member or blend)")
        dsr_ax.set_ylabel("DSR (probability, 0 to 1)")
        first = ranked.iloc[0] if len(ranked) else None
        pbo = first["pbo"] if first is not None else np.nan
        where = (f"PBO {pbo:.2f} over {int(first['pbo_partitions'])} CSCV blocks" if first is not None
                 and np.isfinite(pbo) else "PBO: not computed")  # fmt: skip
        trials = int(first["n_trials"]) if first is not None and pd.notna(first["n_trials"]) else 0
        dsr_ax.set_title(f"h={h}: deflated Sharpe ratio of the net out-of-fold book (higher is better)\n"
                         f"{trials} trials counted; {where}", fontsize=9)  # fmt: skip
        dsr_ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
