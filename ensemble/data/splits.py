"""Checks and joins across splits: time overlap (leakage), short symbols, borrowed context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ensemble.data.contract import DataContractError
from ensemble.data.panel import SplitPanel, format_time


def _time_range(codes: np.ndarray, times: np.ndarray, names: list[str]) -> dict[str, tuple[int, int]]:
    lo = np.full(len(names), np.iinfo(np.int64).max)
    hi = np.full(len(names), np.iinfo(np.int64).min)
    np.minimum.at(lo, codes, times)
    np.maximum.at(hi, codes, times)
    return {name: (int(lo[i]), int(hi[i])) for i, name in enumerate(names)}


def check_no_overlap(keys: list[tuple[Path, np.ndarray, np.ndarray, list[str], str | None]]) -> None:
    """Each symbol's rows in a later split must all come after its rows in every earlier split.

    ``keys``: per split in time order, (path, symbol codes, UTC ns times, symbol names, timezone).
    """
    ranges = [(path, _time_range(codes, times, names), tz) for path, codes, times, names, tz in keys]
    for i, (early_path, early, early_tz) in enumerate(ranges):
        for late_path, late, late_tz in ranges[i + 1 :]:
            for symbol, (first_late, _) in late.items():
                if symbol in early and early[symbol][1] >= first_late:
                    raise DataContractError(
                        f"{late_path}: leakage: symbol '{symbol}' starts at "
                        f"{format_time(first_late, late_tz)}, but {early_path.name} already has it "
                        f"until {format_time(early[symbol][1], early_tz)}; splits must not overlap in time"
                    )


def check_symbol_lengths(panel: SplitPanel, seq_len: int) -> None:
    """Every symbol needs at least ``seq_len`` rows for one full window."""
    starts = panel.block_starts()
    lengths = np.diff(np.r_[starts, len(panel)])
    short = np.flatnonzero(lengths < seq_len)
    if short.size:
        i = int(short[0])
        name = panel.symbols[int(panel.symbol[starts[i]])]
        raise DataContractError(
            f"{panel.path}: symbol '{name}' has {int(lengths[i])} rows, fewer than seq_len={seq_len}; "
            f"lower data.seq_len, drop the symbol upstream, or set data.context_from_previous_split"
        )


def with_context(panel: SplitPanel, previous: SplitPanel, seq_len: int) -> SplitPanel:
    """Prepend each symbol's last ``seq_len - 1`` rows of the previous split as past-only context.

    Context rows carry features only: they are flagged and never become targets.
    """
    if seq_len <= 1:
        return panel
    n_prev = len(previous)
    starts = previous.block_starts()
    block_end = np.repeat(np.r_[starts[1:], n_prev], np.diff(np.r_[starts, n_prev]))
    from_end = block_end - 1 - np.arange(n_prev)
    code_of = {name: i for i, name in enumerate(panel.symbols)}
    mapped = np.array([code_of.get(name, -1) for name in previous.symbols], dtype=np.int64)
    prev_codes = mapped[previous.symbol.numpy()]
    take = np.flatnonzero((from_end < seq_len - 1) & (prev_codes >= 0))
    codes = np.r_[prev_codes[take], panel.symbol.numpy()]
    times = np.r_[previous.time.numpy()[take], panel.time.numpy()]
    order = torch.from_numpy(np.lexsort((times, codes)))
    idx = torch.from_numpy(take)
    label = torch.cat([torch.full((len(take),), -1, dtype=torch.int64), panel.label])
    return SplitPanel(
        path=panel.path,
        features=torch.cat([previous.features.index_select(0, idx), panel.features])[order].contiguous(),
        label=label[order],
        fwd_return=torch.cat([previous.fwd_return[idx], panel.fwd_return])[order],
        weight=torch.cat([torch.zeros(len(take)), panel.weight])[order],
        symbol=torch.from_numpy(codes)[order],
        time=torch.from_numpy(times)[order],
        symbols=panel.symbols,
        is_context=torch.cat([torch.ones(len(take), dtype=torch.bool), panel.is_context])[order],
        tz=panel.tz,
    )


def join_panels(panels: list[SplitPanel]) -> SplitPanel:
    """Consecutive splits as one panel sorted by (symbol, time), so each symbol's bars are counted across them
    (what walk-forward cuts its folds in). Symbols are re-coded over the union; the first panel's path and
    timezone are kept. One copy of the features is made, the inputs can then be dropped.
    """
    names = sorted({name for p in panels for name in p.symbols})
    code_of = {name: i for i, name in enumerate(names)}
    codes = [torch.tensor([code_of[s] for s in p.symbols], dtype=torch.int64)[p.symbol] for p in panels]
    symbol, time = torch.cat(codes), torch.cat([p.time for p in panels])
    order = torch.from_numpy(np.lexsort((time.numpy(), symbol.numpy())))

    def cat(field: str) -> torch.Tensor:
        return torch.cat([getattr(p, field) for p in panels])[order].contiguous()

    return SplitPanel(
        path=panels[0].path, features=cat("features"), label=cat("label"), fwd_return=cat("fwd_return"),
        weight=cat("weight"), symbol=symbol[order], time=time[order], symbols=names,
        is_context=cat("is_context"), tz=panels[0].tz,
    )
