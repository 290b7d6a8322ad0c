"""Guesses on the leaderboard: what a model must beat to have learned anything.

Per horizon, two rows scored with the same metric suite on the same rows as the runs (the rows every finished
run of the horizon predicted):

- ``uniform``: p = 1/3 for each class. Its log loss is ln 3 = 1.0986 nats whatever the labels.
- ``class_prior``: p = the train split's class frequencies (short/flat/long among its labelled rows). Its log
  loss is the cross-entropy -sum_c f_c ln q_c of the evaluated rows' class shares f against the train shares q.

Both are marked ``kind: baseline``: never a blend's member, never chosen. They carry classification metrics only: a
guess has no book (its arg-max is a three-way tie), so no Sharpe or IC is reported for it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from ensemble.data.constants import NUM_CLASSES
from ensemble.data.panel import load_split
from ensemble.data.split_data import SplitData
from ensemble.ensembling.blend import align, members_trading, run_config, split_metrics
from ensemble.errors import EnsembleError
from ensemble.metrics.classification import CLASS_NAMES, classification_metrics

BASELINES = ("uniform", "class_prior")
KIND = "baseline"


def train_class_prior(run_dir: Path) -> np.ndarray:
    """(3,) shares of short/flat/long among the labelled rows of the train split ``run_dir`` was trained on
    (its ``config.yaml``'s ``data`` section, read with seq_len 1: every labelled row counts).

    Raises:
        BlendError: the run has no config.yaml.
        DataContractError: the train split cannot be read.
    """
    data = dict(run_config(run_dir).get("data") or {})
    known = set(inspect.signature(SplitData).parameters)
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs.update(seq_len=1, context_from_previous_split=False, data_on_device=False)
    split = SplitData(**kwargs)
    # the train file alone: the prior needs no other split (nor their cross-split checks, done at fit time)
    label = load_split(split.path("train"), split.roles, split.horizon).label
    counts = torch.bincount(label[label >= 0], minlength=NUM_CLASSES).double().numpy()
    return counts / counts.sum()


_CLASSIFICATION = tuple(classification_metrics(CLASS_NAMES).keys())  # accuracy, f1 (f1_short, ...), log_loss, ...


def baseline_probs(name: str, prior: np.ndarray, n: int) -> np.ndarray:
    """(n, 3) probabilities of baseline ``name``: uniform thirds, or ``prior`` (3,) on every row."""
    row = np.full(NUM_CLASSES, 1.0 / NUM_CLASSES) if name == "uniform" else np.asarray(prior, dtype=np.float64)
    return np.tile(row, (n, 1))


def baseline_metrics(horizon: int, run_dirs: list[str]) -> dict[str, dict[str, float]]:
    """Baseline name -> its ``val/*`` and ``test/*`` metrics (``MetricSuite``) on the rows all of ``run_dirs``
    (finished runs of ``horizon``) predicted; the class prior comes from the first run whose config.yaml records
    its data (a member; a blend's records no data root), the book from the members' common ``trading:`` section.

    Raises:
        EnsembleError: no run records its data, its train split cannot be read, the runs share no rows, or the
            members were booked differently (``BlendError``).
    """
    members = [Path(r) for r in run_dirs if "root" in ((_config(Path(r)) or {}).get("data") or {})]
    if not members:
        raise EnsembleError(f"no run of horizon {horizon} records its data (config.yaml data.root)")
    prior = train_class_prior(members[0])
    trading = members_trading(members, [run_config(m) for m in members])  # booked as the members are
    out: dict[str, dict[str, float]] = {name: {} for name in BASELINES}
    runs = [Path(r) for r in run_dirs]
    # test only when every run has it (``fit --test false`` members have val alone), as blends do
    tested = all((r / "predictions" / "test.parquet").is_file() for r in runs)
    for split in ("val", "test") if tested else ("val",):
        frame = align(runs, split).frame
        for name in BASELINES:
            probs = baseline_probs(name, prior, len(frame))
            scored = split_metrics(split, frame, probs, horizon, trading)
            # a guess has no book: its arg-max is a tie, which would read as "always short" and show a Sharpe
            out[name].update({k: v for k, v in scored.items() if k.split("/", 1)[1].startswith(_CLASSIFICATION)})
    return out


def _config(run_dir: Path) -> dict | None:
    return run_config(run_dir) if (run_dir / "config.yaml").is_file() else None
