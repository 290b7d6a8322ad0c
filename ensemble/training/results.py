"""The one result table every command prints: ``fit``, ``validate``, ``test``, ``blend`` (metric x split) and
``experiment``'s leaderboard (run x column) share its cell format and layout.

Cells: counts (``n_trades``, ``ic_skipped``, a whole ``bars_per_year``) as integers, other numbers with four
decimals, a missing value as ``-``. A split evaluated on part of its batches (``trainer.limit_val_batches``
below 1) is headed ``val (partial)`` and footnoted: its metrics are not the split's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ensemble import console
from ensemble.metrics.suite import INTEGER_METRICS

SPLIT_ORDER = ("val", "test")
PARTIAL = "partial"  # ``{split}/partial`` in results and metrics.json: True when only part of the split was seen


def format_cell(name: str, value: Any) -> str:
    """One table cell: ``value`` of metric or column ``name``.

    Whole numbers of a count metric (``INTEGER_METRICS``) and ints print as integers, other floats with four
    decimals, None and NaN as ``-``, booleans as ``yes``/``no``, anything else as ``str``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if name.rsplit("/", 1)[-1] in INTEGER_METRICS and value.is_integer():
            return str(int(value))
        return f"{value:.4f}"
    return str(value)


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned text table: the first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, rest = cells[0], cells[1:]
        return "  ".join([f"{first:<{widths[0]}}", *(f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True))])

    return "\n".join([line(header), *(line(r) for r in rows)])


def metrics_table(results: Mapping[str, Any], splits: Sequence[str] | None = None) -> str:
    """Metrics (rows, sorted by name) x splits (columns) of ``results`` (``{split}/{metric}`` -> value).

    Args:
        results: e.g. ``{"val/f1_macro": 0.41, "val/n_trades": 120.0, "val/partial": True, "test/...": ...}``.
        splits: the columns, in order; default the splits present, val and test first.
    """
    present = list(dict.fromkeys(k.split("/", 1)[0] for k in results if "/" in k))
    splits = list(splits) if splits is not None else [s for s in SPLIT_ORDER if s in present] + [
        s for s in present if s not in SPLIT_ORDER and s != "fit"]  # fmt: skip
    names = sorted({k.split("/", 1)[1] for k in results if k.split("/", 1)[0] in splits} - {PARTIAL})
    partial = [s for s in splits if results.get(f"{s}/{PARTIAL}")]
    header = ["metric", *(f"{s} (partial)" if s in partial else s for s in splits)]
    rows = [[n, *(format_cell(n, results.get(f"{s}/{n}")) for s in splits)] for n in names]
    # the limit is a fraction (0.5) or a batch count (3): "below the whole split" is right for both
    notes = [f"({s} (partial): evaluated on part of the {s} split, trainer.limit_{s}_batches below the whole "
             "split (a fraction under 1.0, or fewer batches than it has); not the split's metrics)"
             for s in partial]  # fmt: skip
    return "\n".join([render(header, rows), *notes])


def print_results(results: Mapping[str, Any], run_dir: Path | str | None, checkpoint: str | None,
                  splits: Sequence[str] | None = None, source: str = "checkpoint") -> None:  # fmt: skip
    """Print the run, where the metrics came from (``source``: ``checkpoint`` or ``blend``) and
    ``metrics_table``; shown at the normal and quiet levels, not in a muted tuning trial (``console``)."""
    if not console.tables_shown():
        return
    gap = "\n" if console.level() >= console.NORMAL else ""  # set apart from the progress lines above it
    print(f"{gap}run: {run_dir}\n{source}: {checkpoint or '(the weights in memory)'}", flush=True)
    print(metrics_table(results, splits), flush=True)


def print_predictions(run_dir: Path | str | None, checkpoint: str | None) -> None:
    """``predict``'s result: where the predictions went and the checkpoint that made them (as ``print_results``)."""
    if not console.tables_shown():
        return
    gap = "\n" if console.level() >= console.NORMAL else ""
    print(f"{gap}run: {run_dir}\ncheckpoint: {checkpoint or '(the weights in memory)'}\n"
          f"predictions: {Path(str(run_dir)) / 'predictions' / 'predict.parquet'}", flush=True)  # fmt: skip
