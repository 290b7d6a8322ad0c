"""How much was tried, and what that does to the winner: the deflated Sharpe ratio of every candidate and the
probability of backtest overfitting of choosing among them (docs/statistics.md).

- ``trials_tried``: N, per horizon, counted from what was really run: each grid cell once, or, when its
  config came from ``ensemble tune`` (its ``best.yaml`` records the study), every complete and pruned trial
  of that study; plus every blend; plus what earlier runs of the same experiment tried (other config
  fingerprints, other blend versions).
- ``deflated_sharpe``: Bailey and Lopez de Prado (2014) on each candidate's per-period net out-of-fold returns,
  against the expected maximum Sharpe of N unskilled trials whose Sharpe variance is the candidates'.
- ``overfitting_probability``: Bailey, Borwein, Lopez de Prado and Zhu (2015), CSCV over the candidates'
  per-timestamp net return series on their common timestamps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ensemble.io import locate
from ensemble.metrics.overfitting import pbo
from ensemble.metrics.stats import dsr, phase_matrix, sharpe
from ensemble.tuning.record import read_tune_record


def config_files(model_config: Path, flags: list[str]) -> list[Path]:
    """The YAML files a cell's config is built from: the model's config, then every ``--config FILE`` /
    ``-c FILE`` / ``--config=FILE`` among its flags (``fit_args`` and ``model_args``)."""
    files = [Path(model_config)]
    for i, flag in enumerate(flags):
        if flag in ("--config", "-c") and i + 1 < len(flags):
            files.append(Path(flags[i + 1]))
        elif flag.startswith("--config="):
            files.append(Path(flag.split("=", 1)[1]))
    return files


def cell_trials(files: list[Path]) -> int:
    """Configurations one cell stands for: the complete + pruned trials of every study whose ``best.yaml``
    is among ``files`` (``tuning.record``), or 1 for a hand-written config.

    Raises:
        ConfigError: a file cannot be read or its record line is damaged.
    """
    records = [r for f in files if f.is_file() and (r := read_tune_record(f)) is not None]
    return sum(r["complete"] + r["pruned"] for r in records) or 1


def trials_tried(rows: list[dict], files: dict[str, list[Path]], out: Path | None = None) -> dict[int, int]:
    """Horizon -> N, the trials counted for its DSR: ``cell_trials`` of each grid cell of the horizon (failed
    cells too: they were tried) plus one per blend, plus ``earlier_trials`` of the experiment folder ``out``.
    ``files``: model name -> its cell's config files."""
    counts: dict[int, int] = dict(earlier_trials(out, rows)) if out is not None else {}
    for r in rows:
        if r.get("kind") == "baseline":
            continue
        n = 1 if r.get("kind") == "blend" else cell_trials(files.get(str(r["model"]), []))
        counts[int(r["horizon"])] = counts.get(int(r["horizon"]), 0) + n
    return counts


def earlier_trials(out: Path, rows: list[dict]) -> dict[int, int]:
    """Horizon -> configurations an earlier run of the same experiment tried that ``rows`` no longer hold: the
    finished walk-forwards of other config fingerprints (``walkforward/<model>_h<H>/<fingerprint>/oof.parquet``)
    and the other fitted blend versions (``blends/<blend>_h<H>/version_N/blend.json``). An edited grid or blend
    option is a new try; forgetting the old one would understate the selection bias (each counts 1: a folder
    does not say how it was tuned)."""
    found_dirs = (locate(str(r["run_dir"]), out) for r in rows if r.get("run_dir"))  # relative ones: from ``out``
    current = {d.resolve() for d in found_dirs if d is not None}
    counts: dict[int, int] = {}
    for pattern, marker in (("walkforward/*_h*/*", "oof.parquet"), ("blends/*_h*/version_*", "blend.json")):
        for folder in Path(out).glob(pattern):
            found = re.search(r"_h(\d+)$", folder.parent.name)
            if found and (folder / marker).is_file() and folder.resolve() not in current:
                counts[int(found.group(1))] = counts.get(int(found.group(1)), 0) + 1
    return counts


@dataclass(frozen=True)
class DeflatedSharpe:
    """Per candidate (M,): ``sharpe`` per period (mean over the h phases), ``dsr`` in [0, 1]; ``variance``:
    the sample variance (ddof=1) of the candidates' per-period Sharpe ratios, 0 with one candidate."""

    sharpe: np.ndarray
    dsr: np.ndarray
    variance: float
    n_trials: int


def deflated_sharpe(net: np.ndarray, horizon: int, n_trials: int) -> DeflatedSharpe:
    """DSR of every column of ``net`` (T, M), per-timestamp net returns on common timestamps in time order.

    Each column is cut into its h non-overlapping phase series (``stats.phase_matrix``), as the trading metrics
    judge a book; Sharpe and DSR are per phase, then averaged over the phases (as ``psr`` is).

    Raises:
        EnsembleError: ``n_trials`` < 1 (``stats.expected_max_sharpe``).
    """
    phases = [phase_matrix(torch.from_numpy(np.ascontiguousarray(col)), horizon) for col in net.T]
    ratios = np.array([float(sharpe(x, mask).mean()) for x, mask in phases])
    variance = float(np.var(ratios, ddof=1)) if len(ratios) >= 2 else 0.0
    values = np.array([float(dsr(x, mask, n_trials, variance).mean()) for x, mask in phases])
    return DeflatedSharpe(ratios, values, variance, int(n_trials))


@dataclass(frozen=True)
class Overfitting:
    """``pbo`` (NaN when not computed), ``partitions`` used (0 when not computed) and, then, ``why`` not."""

    pbo: float
    partitions: int
    why: str = ""


def usable_partitions(periods: int, horizon: int, partitions: int) -> int:
    """The largest even S <= ``partitions`` whose blocks hold at least max(2, h) timestamps each (T // S >=
    max(2, h): a block shorter than h is mostly overlap with its neighbours); 0 when even S = 2 does not fit."""
    fit = 2 * (periods // (2 * max(2, horizon)))
    return max(min(partitions - partitions % 2, fit), 0) if fit >= 2 else 0


def overfitting_probability(net: np.ndarray, horizon: int, partitions: int = 16) -> Overfitting:
    """PBO of choosing the best column of ``net`` (T, M) by Sharpe ratio, by CSCV with ``partitions`` blocks,
    reduced (``usable_partitions``) when the series are too short for them; the reduction is reported in
    ``partitions`` and the leaderboard. Fewer than 2 candidates, or too few timestamps even for 2 blocks, give
    no PBO and say why."""
    periods, candidates = net.shape
    if candidates < 2:
        return Overfitting(math.nan, 0, f"{candidates} candidate: no choice, no PBO")
    used = usable_partitions(periods, horizon, partitions)
    if used < 2:
        return Overfitting(math.nan, 0, f"{periods} common timestamps: too few for 2 blocks of {max(2, horizon)}")
    return Overfitting(pbo(net, used).pbo, used)
