"""Guesses on the leaderboard: what a model must beat to have learned anything.

Per horizon, two rows scored with the same metric suite on the same rows as the runs (the rows every finished
run of the horizon predicted):

- ``uniform``: p = 1/3 for each class. Its log loss is ln 3 = 1.0986 nats whatever the labels.
- ``class_prior``: p = the train split's class frequencies (short/flat/long among its labelled rows). Its log
  loss is the cross-entropy -sum_c f_c ln q_c of the evaluated rows' class shares f against the train shares q.

- ``random_prior``: random in proportion: each row's class drawn at random with the train shares q. Its expected
  macro-F1 is the closed form mean_c 2 f_c q_c / (f_c + q_c) (per class: precision f_c, recall q_c in
  expectation), 1/3 when f = q; its expected accuracy sum_c f_c q_c. A random draw has no probabilities: its
  log loss is that of the prior it draws from (``class_prior``'s).

All are marked ``kind: baseline``: never a blend's member, never chosen. They carry classification metrics only: a
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

BASELINES = ("uniform", "class_prior", "random_prior")
PROBABILISTIC = ("uniform", "class_prior")  # scored by the metric suite; random_prior in closed form
KIND = "baseline"


def train_class_prior(run_dir: Path, config: dict | None = None) -> np.ndarray:
    """(3,) shares of short/flat/long among the labelled rows of the train split ``run_dir`` was trained on
    (the ``data`` section of ``config``, default its ``config.yaml``, read with seq_len 1: every labelled row
    counts).

    Raises:
        BlendError: the run has no config.yaml.
        DataContractError: the train split cannot be read.
    """
    data = dict((config if config is not None else run_config(run_dir)).get("data") or {})
    known = set(inspect.signature(SplitData).parameters)
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs.update(seq_len=1, context_from_previous_split=False, data_on_device=False)
    split = SplitData(**kwargs)
    # the train file alone: the prior needs no other split (nor their cross-split checks, done at fit time)
    label = load_split(split.path("train"), split.roles, split.horizon).label
    counts = torch.bincount(label[label >= 0], minlength=NUM_CLASSES).double().numpy()
    return counts / counts.sum()


_CLASSIFICATION = classification_metrics(CLASS_NAMES).names  # accuracy, f1 (f1_short, ...), log_loss, ...


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
        for name in PROBABILISTIC:
            probs = baseline_probs(name, prior, len(frame))
            scored = split_metrics(split, frame, probs, horizon, trading)
            # a guess has no book: its arg-max is a tie, which would read as "always short" and show a Sharpe
            out[name].update({k: v for k, v in scored.items() if k.split("/", 1)[1].startswith(_CLASSIFICATION)})
        shares = np.bincount(frame["label"].to_numpy() + 1, minlength=NUM_CLASSES) / len(frame)
        out["random_prior"].update({f"{split}/{k}": v for k, v in random_in_proportion(shares, prior).items()})
    return out


def random_in_proportion(shares: np.ndarray, prior: np.ndarray) -> dict[str, float]:
    """Expected ``f1_macro``, ``accuracy`` and the ``log_loss`` of labels drawn at random in the proportions
    ``prior`` (3,) (the train shares q) on rows whose classes have the shares ``shares`` (3,) (f).

    Per class c, in expectation over n rows: true positives n f_c q_c, predicted n q_c, actual n f_c, so
    precision f_c, recall q_c and F1_c = 2 f_c q_c / (f_c + q_c) (0 when both are 0); macro-F1 their mean over
    the 3 classes; accuracy sum_c f_c q_c. The log loss is the prior's, -sum_c f_c ln max(q_c, 1e-7) nats.
    """
    f, q = np.asarray(shares, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    both = f + q
    f1 = np.divide(2 * f * q, both, out=np.zeros_like(both), where=both > 0)
    return {"f1_macro": float(f1.mean()), "accuracy": float((f * q).sum()),
            "log_loss": float(-(f * np.log(np.clip(q, 1e-7, 1.0))).sum())}


def guesses(shares: np.ndarray, prior: np.ndarray) -> dict[str, dict[str, float]]:
    """``f1_macro`` and ``log_loss`` of every baseline on rows with class shares ``shares`` (3,), in closed form:
    a constant guess predicts its arg-max class c* (the first on a tie: uniform's is short) on every row,
    F1 = (2 f_c* / (1 + f_c*)) / 3 (precision f_c*, recall 1, the two other classes 0); its log loss is the
    cross-entropy -sum_c f_c ln p_c. ``random_prior`` as ``random_in_proportion``."""
    f = np.asarray(shares, dtype=np.float64)
    out = {}
    for name in PROBABILISTIC:
        p = baseline_probs(name, prior, 1)[0]
        top = f[int(np.argmax(p))]
        out[name] = {"f1_macro": float(2 * top / (1 + top) / 3),
                     "log_loss": float(-(f * np.log(np.clip(p, 1e-7, 1))).sum())}
    out["random_prior"] = {k: v for k, v in random_in_proportion(f, prior).items() if k != "accuracy"}
    return out


def _config(run_dir: Path) -> dict | None:
    return run_config(run_dir) if (run_dir / "config.yaml").is_file() else None
