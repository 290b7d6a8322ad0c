"""The champion of each horizon: among every candidate with out-of-fold predictions (walk-forward members and
out-of-fold blends), the best by an out-of-fold metric on the rows all of them share; judged once on test
against the oracle (the member best on test, a choice made with hindsight), with a block-bootstrap interval.

Writes ``<out>/champion_h<H>.json`` (the format ``ensemble register`` reads; its run folders relative to ``<out>``)
and adds to the leaderboard rows:
``champion`` / ``oracle`` markers, the metric on the shared out-of-fold rows, the test log loss on the shared
test rows, ``dsr``, ``n_trials``, and the horizon's ``pbo``; baseline rows scored on the same rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.ensembling.blend import Aligned, split_metrics
from ensemble.errors import ConfigError, EnsembleError
from ensemble.experiments.baselines import BASELINES, guesses, train_class_prior
from ensemble.experiments.candidates import (
    OOF,
    TEST,
    Candidate,
    align_files,
    candidate_config,
    candidates_of,
    candidates_trading,
    metrics_of,
    net_returns,
    row_log_loss,
)
from ensemble.experiments.selection_bias import deflated_sharpe, overfitting_probability
from ensemble.io import record_path, write_json
from ensemble.metrics.arrays import suite_metric_names
from ensemble.metrics.bootstrap import block_bootstrap_difference
from ensemble.metrics.suite import metric_mode
from ensemble.training.artifacts import utc_ns

LEVEL = 0.9
# what the record's Sharpe numbers are: the DSR's inputs, per period as Bailey and Lopez de Prado (2014) take them,
# where metrics.json's sharpe and sharpe_net are annualised (times sqrt(bars_per_year / h))
UNITS = {"sharpe_net_per_period": "Sharpe ratio of the net out-of-fold book per h-bar period (mean / std, ddof=1, "
                                  "mean over the h phases) on the candidates' shared rows, not annualised; "
                                  "metrics.json's sharpe_net is annualised: times sqrt(bars_per_year / h)",
         "sharpe_variance": "sample variance (ddof=1) across the candidates of sharpe_net_per_period, per period "
                            "squared",
         "log_loss": "nats per row", "difference": "champion - oracle test log loss, nats per row"}  # fmt: skip


def champion_metrics() -> tuple[str, ...]:
    """The ``oof/<name>`` metrics a champion can be chosen by: the metric suite's names less its counts
    (n_trades, ic_skipped, bars_per_year), which measure the data, not the candidate (``suite_metric_names``)."""
    return tuple(sorted(f"oof/{name}" for name in suite_metric_names()))


def check_champion_metric(metric: str) -> None:
    """Raises ConfigError unless ``metric`` is one of ``champion_metrics()`` (an ``oof/<name>`` key of the metric
    suite, not a count); cheap enough to run before any cell trains."""
    if not metric.startswith("oof/") or len(metric) <= 4:
        raise ConfigError(f"champion_metric: an out-of-fold metric such as oof/log_loss, got '{metric}'")
    if metric not in champion_metrics():
        raise ConfigError(f"champion_metric: '{metric}' is not an out-of-fold metric; known: "
                          f"{', '.join(champion_metrics())}")  # fmt: skip


def check_partitions(partitions: int) -> None:
    """Raises ConfigError unless ``partitions`` is even and >= 2 (CSCV halves the blocks)."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 2 or partitions % 2:
        raise ConfigError(f"pbo_partitions must be an even integer >= 2, got {partitions}")


def _scores(candidates: list[Candidate], oof: Aligned, metric: str, horizon: int, loss: np.ndarray) -> np.ndarray:
    """(M,) ``metric`` of every candidate on the shared out-of-fold rows; ``loss``: their (M,) log loss there."""
    if metric == "oof/log_loss":
        return loss
    trading = candidates_trading(candidates)
    values = []
    for probs in oof.probs:
        scored = split_metrics("oof", oof.frame, probs, horizon, trading)
        values.append(scored[metric])
    return np.array(values, dtype=np.float64)


def champion_record(candidates: list[Candidate], horizon: int, metric: str = "oof/log_loss",
                    partitions: int = 16, n_trials: int | None = None, seed: int = 0) -> dict:  # fmt: skip
    """The champion of ``horizon`` among ``candidates`` and everything the leaderboard shows about them.

    Returns:
        The ``champion_h<H>.json`` record (S5_INTERFACES C) plus ``candidates``: one dict per candidate
        (``score``, ``test_log_loss``, ``sharpe_net_per_period``, ``dsr``), ``units`` (what those numbers
        measure: per period, where metrics.json's Sharpe ratios are annualised), ``pbo``, ``pbo_partitions``
        (0: none, see ``pbo_note``), ``n_trials``, ``rows`` and ``guesses`` (the baselines on the shared rows).

    Raises:
        ConfigError: an unknown ``metric``; CandidateError: candidates that cannot be put on common rows or
            booked alike; BootstrapError: no shared test rows.
    """
    check_champion_metric(metric)
    oof = align_files(candidates, OOF)
    oof_loss = row_log_loss(oof).mean(axis=1)
    scores = _scores(candidates, oof, metric, horizon, oof_loss)
    lower = metric_mode(metric) == "min"
    best = int(np.nanargmin(scores) if lower else np.nanargmax(scores))  # ties: the first (row order)
    trading = candidates_trading(candidates)
    _, net = net_returns(oof, horizon, trading)
    n = n_trials or len(candidates)
    deflated = deflated_sharpe(net, horizon, max(n, 1))
    overfit = overfitting_probability(net, horizon, partitions)
    champ = candidates[best]
    record = {
        "horizon": horizon, "metric": metric,
        "champion": {"name": champ.name, "kind": champ.kind, "run_dir": str(champ.run_dir)},
        "oracle": None, "champion_test_log_loss": None, "difference": None, "interval": None, "level": LEVEL,
        "block": None, "test_note": "", "n_trials": n, "sharpe_variance": deflated.variance, "pbo": overfit.pbo,
        "units": UNITS,
        "pbo_partitions": overfit.partitions, "pbo_note": overfit.why,
        "rows": {"oof": len(oof.frame), "test": 0, "oof_timestamps": int(net.shape[0])},
        "candidates": [{"name": c.name, "kind": c.kind, "run_dir": str(c.run_dir), "score": float(scores[i]),
                        "oof_log_loss": float(oof_loss[i]), "test_log_loss": None,
                        "sharpe_net_per_period": float(deflated.sharpe[i]),
                        "dsr": float(deflated.dsr[i])}
                       for i, c in enumerate(candidates)],
    }  # fmt: skip
    missing = [c.run_dir / TEST for c in candidates if not (c.run_dir / TEST).is_file()]
    if missing:  # e.g. walk-forwards over span all, or without final models: no untouched test to judge on
        record["test_note"] = f"{missing[0]} is missing: no test comparison"
        record["guesses"] = _guesses(candidates, oof, None)
        return _against_baselines(record, float(oof_loss[best]))
    test = align_files(candidates, TEST)
    test_loss = row_log_loss(test)
    members = [i for i, c in enumerate(candidates) if c.kind == "member"]
    oracle = min(members or range(len(candidates)), key=lambda i: test_loss[i].mean())  # hindsight, test
    interval = block_bootstrap_difference(test_loss[best], test_loss[oracle], utc_ns(test.frame["datetime"]),
                                          horizon=horizon, level=LEVEL, seed=seed)  # fmt: skip
    orc = candidates[oracle]
    record.update({
        "oracle": {"name": orc.name, "run_dir": str(orc.run_dir), "test_log_loss": float(test_loss[oracle].mean())},
        "champion_test_log_loss": float(test_loss[best].mean()), "difference": interval.difference,
        "interval": [interval.low, interval.high], "level": interval.level, "block": interval.block,
        "guesses": _guesses(candidates, oof, test)})  # fmt: skip
    record["rows"]["test"] = len(test.frame)
    for i, c in enumerate(record["candidates"]):
        c["test_log_loss"] = float(test_loss[i].mean())
    return _against_baselines(record, float(oof_loss[best]))


def _portable(record: dict, out: Path) -> dict:
    """``record`` as ``champion_h<H>.json`` holds it: every ``run_dir`` inside the experiment folder ``out``
    relative to it (``record_path``), so the experiment can move or be registered from any working directory."""
    def moved(entry: dict | None) -> dict | None:
        return None if entry is None else {**entry, "run_dir": record_path(entry["run_dir"], out)}

    return {**record, "champion": moved(record["champion"]), "oracle": moved(record["oracle"]),
            "candidates": [moved(c) for c in record["candidates"]]}


def _against_baselines(record: dict, champion_loss: float) -> dict:
    """Add ``best_baseline`` (the baseline with the lowest out-of-fold log loss on the shared rows: name and
    ``oof_log_loss``) and ``beats_baselines`` (the champion's out-of-fold log loss there is strictly below it;
    ``None`` when the baselines could not be built) to ``record``; returns it."""
    guessed = record["guesses"]
    if "error" in guessed:
        record.update(best_baseline=None, beats_baselines=None)
        return record
    name = min(BASELINES, key=lambda b: guessed[b]["oof"]["log_loss"])
    best = guessed[name]["oof"]["log_loss"]
    record.update(best_baseline={"name": name, "oof_log_loss": best}, beats_baselines=bool(champion_loss < best))
    return record


def _guesses(candidates: list[Candidate], oof: Aligned, test: Aligned | None) -> dict:
    """Baselines on the shared rows: {name: {"oof": {...}, "test": {...}}} (no "test" without ``test``), or
    {"error": why} when the train prior cannot be read (no member, or its config without its data)."""
    members = [c.run_dir for c in candidates if c.kind == "member"]
    if not members:
        return {"error": "no member candidate: no train split to take the class prior from"}
    try:
        prior = train_class_prior(members[0], candidate_config(members[0]))
    except EnsembleError as err:
        return {"error": str(err)}
    parts = {}
    for split, aligned in (("oof", oof), ("test", test)):
        if aligned is not None:
            parts[split] = guesses(np.bincount(aligned.labels, minlength=3) / len(aligned.labels), prior)
    return {name: {split: parts[split][name] for split in parts} for name in BASELINES}


def _summary(record: dict) -> str:
    """Two lines: the champion and its test comparison; the selection-bias statistics."""
    champ, orc = record["champion"], record["oracle"]
    score = next(c["score"] for c in record["candidates"] if c["run_dir"] == champ["run_dir"])
    pbo = (f"PBO {record['pbo']:.2f} ({record['pbo_partitions']} partitions)" if record["pbo_partitions"]
           else f"PBO - ({record['pbo_note']})")  # fmt: skip
    if orc is None:
        judged = record["test_note"]
    else:
        lo, hi = record["interval"]
        judged = (f"test log loss {record['champion_test_log_loss']:.4f} vs oracle {orc['name']} "
                  f"{orc['test_log_loss']:.4f} (best member on test, chosen with hindsight): champion - oracle "
                  f"{record['difference']:+.4f}, {record['level']:.0%} block-bootstrap interval [{lo:+.4f}, "
                  f"{hi:+.4f}] (blocks of {record['block']} timestamps)")  # fmt: skip
    worse = ""
    if record.get("beats_baselines") is False:
        loss = next(c["oof_log_loss"] for c in record["candidates"] if c["run_dir"] == champ["run_dir"])
        guess = record["best_baseline"]
        worse = (f"; WORSE than the {guess['name'].replace('_', '-')} guess: out-of-fold log loss {loss:.4f} is not "
                 f"below its {guess['oof_log_loss']:.4f}")  # fmt: skip
    return (f"h{record['horizon']} champion: {champ['name']} ({champ['kind']}), {record['metric']} {score:.4f} on "
            f"{record['rows']['oof']} shared out-of-fold rows{worse}; {judged}\n"
            f"h{record['horizon']} selection bias: {len(record['candidates'])} candidate(s), {record['n_trials']} "
            f"trials counted; champion DSR "
            f"{next(c['dsr'] for c in record['candidates'] if c['run_dir'] == champ['run_dir']):.3f}; {pbo}")


def choose_champions(rows: list[dict], out: Path, metric: str = "oof/log_loss", partitions: int = 16,
                     trials: dict[int, int] | None = None) -> list[dict]:  # fmt: skip
    """Choose and record the champion of every horizon of ``rows`` (leaderboard rows of an experiment's
    walk-forward cells and out-of-fold blends), print its summary, and return the rows with the champion
    columns added (``champion``, ``oracle``, ``<metric>_shared``, ``test_log_loss_shared``, ``test_f1_macro``,
    ``dsr``, ``n_trials``, ``pbo``, ``pbo_partitions``) followed by the baseline rows of each horizon.

    A horizon with no candidate (every cell failed) gets no champion. ``trials``: horizon -> N for the DSR
    (``selection_bias.trials_tried``); default the candidates' count.

    Raises:
        ConfigError: a bad ``metric`` or ``partitions``; CandidateError, BootstrapError: as ``champion_record``.
    """
    check_champion_metric(metric)
    check_partitions(partitions)
    column = metric.replace("/", "_") + "_shared"
    # oof_log_loss_shared always (the chart's log-loss panel and the baseline check), the chosen metric beside it
    rows = [{**r, "champion": False, "oracle": False, "oof_log_loss_shared": math.nan, column: math.nan,
             "test_log_loss_shared": math.nan,
             "dsr": math.nan, "n_trials": None, "pbo": math.nan, "pbo_partitions": None,
             "best_member": "", "beats_best_member": None, "test_minus_oracle": math.nan,
             "test_minus_oracle_lo": math.nan, "test_minus_oracle_hi": math.nan} for r in rows]  # fmt: skip
    extra = []
    for horizon in sorted({int(r["horizon"]) for r in rows}):
        candidates = candidates_of(rows, horizon)
        if not candidates:
            continue
        record = champion_record(candidates, horizon, metric, partitions, (trials or {}).get(horizon))
        write_json(out / f"champion_h{horizon}.json", _portable(record, out))
        by_dir = {c["run_dir"]: c for c in record["candidates"]}
        for r in rows:
            if int(r["horizon"]) != horizon:
                continue
            r.update(n_trials=record["n_trials"], pbo=record["pbo"], pbo_partitions=record["pbo_partitions"])
            if (c := by_dir.get(str(r["run_dir"]))) is not None:
                recorded = metrics_of(Candidate(c["name"], c["kind"], Path(c["run_dir"])))
                oracle = (record["oracle"] or {}).get("run_dir")
                r.update({"oof_log_loss_shared": c["oof_log_loss"], column: c["score"],
                          "test_log_loss_shared": c["test_log_loss"], "dsr": c["dsr"],
                          "champion": c["run_dir"] == record["champion"]["run_dir"], "oracle": c["run_dir"] == oracle})
                if r.get("test_f1_macro") is None:
                    r["test_f1_macro"] = recorded.get("test/f1_macro")
                if r["champion"] and record["difference"] is not None:
                    r.update(test_minus_oracle=record["difference"], test_minus_oracle_lo=record["interval"][0],
                             test_minus_oracle_hi=record["interval"][1])  # fmt: skip
        _best_member_columns([r for r in rows if int(r["horizon"]) == horizon], column, metric)
        extra += _baseline_rows(record, horizon, column, rows[0].keys())
        print(_summary(record), flush=True)
    return rows + extra


def _best_member_columns(rows: list[dict], column: str, metric: str) -> None:
    """Set ``best_member`` and ``beats_best_member`` on the blend rows of one horizon, in place: the best member is
    the walk-forward cell best on the champion ``metric`` out of fold (``column``, on the shared rows), as a
    user would choose without the blend; the blend beats it when its test log loss on the shared rows is strictly
    below that member's (None when either has none). Test is compared, never used to choose."""
    members = [r for r in rows if r.get("kind") == "walkforward" and not _missing(r.get(column))]
    if not members:
        return
    sign = 1.0 if metric_mode(metric) == "min" else -1.0
    best = min(members, key=lambda r: sign * float(r[column]))
    for r in rows:
        if r.get("kind") == "blend":
            mine, theirs = r.get("test_log_loss_shared"), best.get("test_log_loss_shared")
            r["best_member"] = str(best["model"])
            r["beats_best_member"] = None if _missing(mine) or _missing(theirs) else bool(mine < theirs)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _baseline_rows(record: dict, horizon: int, column: str, keys) -> list[dict]:
    """Leaderboard rows of the horizon's baselines on the shared rows (``kind: baseline``, never chosen)."""
    guessed = record["guesses"]
    out = []
    for name in BASELINES:
        values = dict.fromkeys(keys)
        values.update(model=name, horizon=horizon, kind="baseline", run_dir="", champion=False, oracle=False,
                      dsr=math.nan, n_trials=None, pbo=math.nan, pbo_partitions=None)  # fmt: skip
        if "error" in guessed:
            values.update(status="failed", error=guessed["error"])
        else:
            g = guessed[name]
            test = g.get("test", {})
            values.update(status="done", error="", oof_f1_macro=g["oof"]["f1_macro"],
                          test_f1_macro=test.get("f1_macro"), test_log_loss_shared=test.get("log_loss", math.nan))
            # the baselines' metrics are in closed form: log loss and macro-F1; any other metric is left empty
            values[column] = g["oof"].get(column.removeprefix("oof_").removesuffix("_shared"), math.nan)
            values["oof_log_loss"] = values["oof_log_loss_shared"] = g["oof"]["log_loss"]
        out.append(values)
    return out
