"""The out-of-fold candidates of one horizon (walk-forward members and out-of-fold blends), read from their
folders (``oof.parquet``, ``predictions/test.parquet``, ``config.yaml``) and put on the rows all of them share.

Candidates are only comparable on the same rows: a blend's out-of-fold predictions start at fold 2 (its
weights on fold f are fitted on folds before f), and members with longer windows predict fewer rows, so
every statistic of the champion, the DSR and the PBO is computed on the intersection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.ensembling.blend import KEYS, Aligned, BlendError, run_config
from ensemble.ensembling.methods import true_class_probs
from ensemble.errors import ConfigError, EnsembleError
from ensemble.metrics.book import book_series, size_positions
from ensemble.metrics.config import TradingConfig
from ensemble.training.artifacts import PROB_COLUMNS, utc_ns
from ensemble.training.trading import trading_section

OOF, TEST = "oof.parquet", "predictions/test.parquet"
EPS = 1e-7  # the probability clip of every log loss in the package (metrics.classification.LogLoss)


class CandidateError(EnsembleError):
    """Candidates that cannot be compared; the message names the folder."""


@dataclass(frozen=True)
class Candidate:
    """One leaderboard row that has out-of-fold predictions: ``kind`` is ``member`` or ``blend``."""

    name: str
    kind: str
    run_dir: Path


def candidates_of(rows: list[dict], horizon: int) -> list[Candidate]:
    """The finished rows of ``horizon`` whose ``run_dir`` holds ``oof.parquet``, in row order. A walk-forward
    cell (kind ``walkforward`` or ``member``) is a member; kind ``blend`` a blend; baselines never compete."""
    out = []
    for r in rows:
        if r.get("horizon") != horizon or r.get("status") != "done" or r.get("kind") == "baseline":
            continue
        if r.get("run_dir") and (Path(r["run_dir"]) / OOF).is_file():
            out.append(Candidate(str(r["model"]), "blend" if r["kind"] == "blend" else "member", Path(r["run_dir"])))
    return out


def align_files(candidates: list[Candidate], name: str) -> Aligned:
    """The rows (datetime, symbol) every candidate's ``name`` file (``OOF`` or ``TEST``) holds, sorted, with
    each candidate's (N, 3) probabilities stacked as (M, N, 3).

    Raises:
        CandidateError: a file is missing, the candidates share no row, or two disagree on a row's label.
    """
    frames = []
    for c in candidates:
        path = c.run_dir / name
        if not path.is_file():
            raise CandidateError(f"{path}: missing; every candidate needs it to be compared")
        frames.append(pd.read_parquet(path, columns=[*KEYS, "label", "fwd_return", *PROB_COLUMNS]))
    common = frames[0][KEYS]
    for df in frames[1:]:
        common = common.merge(df[KEYS], on=KEYS)
    if common.empty:
        raise CandidateError(f"the candidates share no {name} rows: {[str(c.run_dir) for c in candidates]}")
    common = common.sort_values(KEYS, kind="stable").reset_index(drop=True)
    parts = [common.merge(df, on=KEYS, how="left") for df in frames]
    for c, part in zip(candidates[1:], parts[1:], strict=True):
        if not np.array_equal(part["label"].to_numpy(), parts[0]["label"].to_numpy()):
            raise CandidateError(f"{c.run_dir / name}: its labels differ from {candidates[0].run_dir / name}'s on "
                                 "the same rows; candidates of one data set and horizon only")  # fmt: skip
    probs = np.stack([p[list(PROB_COLUMNS)].to_numpy(np.float64) for p in parts])
    return Aligned(parts[0][[*KEYS, "label", "fwd_return"]], probs)


def row_log_loss(aligned: Aligned) -> np.ndarray:
    """(M, N) per-row log loss -ln p_m(true class), nats, probabilities clipped at 1e-7 as every log loss is."""
    return -np.log(np.clip(true_class_probs(aligned.probs, aligned.labels), EPS, 1.0))


def candidate_config(run_dir: Path) -> dict:
    """The run config of a candidate: its ``config.yaml``, else (a walk-forward folder written before it had
    one) the config its ``walkforward.json`` records.

    Raises:
        CandidateError: neither file is there.
    """
    record = run_dir / "walkforward.json"
    if not (run_dir / "config.yaml").is_file() and record.is_file():
        return json.loads(record.read_text())["config"]
    try:
        return run_config(run_dir)
    except BlendError as err:
        raise CandidateError(str(err)) from err


def candidates_trading(candidates: list[Candidate]) -> TradingConfig:
    """The candidates' common ``trading:`` section (their ``config.yaml``), booked alike or refused.

    Raises:
        CandidateError: a missing config.yaml, a bad section, or two candidates booked differently (naming
            the key); ``bars_per_year`` may differ (the DSR and PBO are per period, never annualised). A blend
            whose config has no ``trading:`` section is booked as the members are.
    """
    sections, booked = [], []
    for c in candidates:
        config = candidate_config(c.run_dir)
        if "trading" not in config and c.kind == "blend":
            continue  # a blend without its own section is booked as its members are
        try:
            sections.append(trading_section(config).as_dict() | {"bars_per_year": None})
        except ConfigError as err:
            raise CandidateError(f"{c.run_dir}: {err}") from err
        booked.append(c)
    for c, section in zip(booked[1:], sections[1:], strict=True):
        for key, value in section.items():
            if value != sections[0][key]:
                raise CandidateError(f"{c.run_dir}: trading.{key} is {value}, but {booked[0].run_dir} has "
                                     f"{sections[0][key]}; candidates must be booked alike")  # fmt: skip
    return TradingConfig.from_mapping(sections[0] if sections else None)


def net_returns(aligned: Aligned, horizon: int, trading: TradingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-timestamp net book returns of every candidate on the aligned rows: ((T,) int64 ns timestamps,
    (T, M) net returns ``BookSeries.net``), booked as the trading metrics book them (rows with a NaN
    fwd_return are out of the book).

    Raises:
        CandidateError: no row has a forward return.
    """
    keep = np.isfinite(aligned.frame["fwd_return"].to_numpy(np.float64))
    if not keep.any():
        raise CandidateError("no aligned out-of-fold row has a forward return: no book to judge")
    frame = aligned.frame[keep]
    time = torch.from_numpy(utc_ns(frame["datetime"]))
    symbol = torch.from_numpy(pd.factorize(frame["symbol"], sort=True)[0].astype(np.int64))
    fwd = torch.from_numpy(frame["fwd_return"].to_numpy(np.float64, copy=True))
    series = []
    for probs in aligned.probs[:, keep]:
        p = torch.from_numpy(np.ascontiguousarray(probs))
        book = book_series(time, symbol, size_positions(p, trading), p[:, 2] - p[:, 0], fwd, horizon, trading)
        series.append(book.net(trading.cost_rate).numpy())
    return book.times.numpy(), np.stack(series, axis=1)


def metrics_of(candidate: Candidate) -> dict:
    """The candidate's ``metrics.json`` ({} when it has none)."""
    path = candidate.run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
