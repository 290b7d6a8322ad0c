"""Blend finished runs into an ordinary run, fitted on val (``fit_on: val``): predictions, metrics.json, plots,
config.yaml. Out-of-fold blends of walk-forward folders are ``ensemble.ensembling.oof``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ensemble import console
from ensemble.ensembling.methods import METHODS, OPTIONS
from ensemble.errors import ConfigError, EnsembleError, unknown_key
from ensemble.io import atomic_write, locate, record_path, write_json
from ensemble.metrics.arrays import score_probabilities
from ensemble.metrics.config import TradingConfig
from ensemble.training.artifacts import PROB_COLUMNS, update_metrics_json, utc_ns, write_stage
from ensemble.training.runs import claim_run_dir, run_versions
from ensemble.training.trading import check_bars_per_year, trading_section

KEYS = ["datetime", "symbol"]

# said once wherever blends are fitted on val (``ensemble blend`` of fit runs, a plain experiment)
VAL_NOTE = ("note: fitted on val, which also early-stopped the members and chose their checkpoints (fit_on: val); "
            "blend walk-forward folders (an experiment: a walkforward: section) to fit on out-of-fold predictions")


class BlendError(EnsembleError):
    """Members that cannot be blended; the message names the runs."""


@dataclass
class Aligned:
    """Rows every member predicted, in one order."""

    frame: pd.DataFrame  # datetime, symbol, label, fwd_return
    probs: np.ndarray  # (M, N, 3)
    member_rows: tuple[tuple[int, int], ...] = ()  # (rows, symbols) each member predicted in the split

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy() + 1  # -1/0/1 -> 0/1/2

    def say_shared(self, run_dirs: list[Path], split: str) -> None:
        """One line when members predicted different rows, so a blend judged on a fraction of a member's rows (a
        member trained on fewer symbols, say) never passes unseen; nothing when every member predicted them all.
        Longer windows alone (a few warm-up rows) also show here, with their counts."""
        if all(rows == len(self.frame) for rows, _ in self.member_rows):
            return
        symbols = self.frame["symbol"].nunique()
        shared = f"{len(self.frame):,} rows ({symbols} symbol{'' if symbols == 1 else 's'})"
        each = ", ".join(f"{run}: {rows:,} ({symbols})" for run, (rows, symbols) in zip(run_dirs, self.member_rows,
                                                                                       strict=True))
        console.say(f"blend judged on the {split} rows every member predicted, {shared}; members predicted {each}")


def make_method(method: str, options: dict[str, dict[str, Any]] | None = None, **fixed: Any) -> Callable[[], Any]:
    """A factory of unfitted ``method`` blends, with ``options[method]`` (e.g. ``{"caruana": {"size": 50}}``).

    Raises:
        BlendError: an unknown method.
        ConfigError: ``options`` keyed by something other than a method, an option the method does not take
            (naming it and the known ones), or out of its range.
    """
    if method not in METHODS:
        raise BlendError(f"unknown blend method '{method}'; use one of {', '.join(METHODS)}")
    if not isinstance(options or {}, dict):
        raise ConfigError(f"blend options must be a mapping of method: {{option: value}}, got {options!r}")
    for key, given in (options or {}).items():
        if key not in METHODS:
            raise unknown_key(f"blend_options.{key}", METHODS, "blend method")
        if not isinstance(given, dict):
            raise ConfigError(f"blend options for {key} must be a mapping of option: value, got {given!r}")
        known = OPTIONS.get(key, ())
        for option in given:
            if option not in known:
                raise unknown_key(f"blend_options.{key}.{option}", known, f"{key} option")
    kwargs = {**(options or {}).get(method, {}), **fixed}
    try:
        METHODS[method](**kwargs)  # options are checked once, here, not at the first fit
    except TypeError as err:  # a value of the wrong type, e.g. size: "5"
        raise ConfigError(f"blend options {method}: {kwargs}: {err}") from err
    return lambda: METHODS[method](**kwargs)


def check_members(run_dirs: list[Path]) -> None:
    """Raise ``BlendError`` unless ``run_dirs`` are at least two existing folders, none given twice (compared
    resolved, so ``runs/a`` and ``./runs/a`` are one member): a member twice would just double its weight."""
    if len(run_dirs) < 2:
        raise BlendError("a blend needs at least two runs")
    missing = [str(r) for r in run_dirs if not Path(r).is_dir()]
    if missing:
        raise BlendError(f"{', '.join(missing)}: no such folder; give finished run or walk-forward folders")
    seen: dict[Path, Path] = {}
    for run in run_dirs:
        resolved = run.resolve()
        if resolved in seen:
            raise BlendError(f"{run}: given twice in --runs (as {seen[resolved]} too); blend distinct members")
        seen[resolved] = run


def run_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise BlendError(f"{run_dir}: not a finished run (no config.yaml)")
    return yaml.safe_load(path.read_text())


def align(run_dirs: list[Path], split: str, file: str | None = None) -> Aligned:
    """The ``split`` rows every member predicted, from each member's ``file`` (default
    ``predictions/<split>.parquet``; ``oof.parquet`` for out-of-fold rows, whose ``fold`` column is kept).

    Raises:
        BlendError: a member without the file, no shared row, or members whose labels or folds differ.
    """
    file = file or f"predictions/{split}.parquet"
    frames = []
    for run in run_dirs:
        path = run / file
        if not path.is_file():
            raise BlendError(f"{run}: no {file}; finish the run first")
        frames.append(pd.read_parquet(path))
    common = frames[0][KEYS]
    for df in frames[1:]:  # members with longer windows predict fewer rows: keep the rows all have
        common = common.merge(df[KEYS], on=KEYS)
    if common.empty:
        raise BlendError(f"runs share no {split} rows: {[str(r) for r in run_dirs]}")
    common = common.sort_values(KEYS, kind="stable").reset_index(drop=True)
    parts = [common.merge(df, on=KEYS, how="left") for df in frames]
    kept = ["label", "fold"] if "fold" in parts[0] else ["label"]
    for run, part in zip(run_dirs[1:], parts[1:], strict=True):
        for column in kept:
            if not np.array_equal(part[column].to_numpy(), parts[0][column].to_numpy()):
                raise BlendError(f"{run}: its {split} {column}s differ from {run_dirs[0]}'s on the same rows; blend "
                                 f"runs of one data set, horizon and fold plan only")  # fmt: skip
    probs = np.stack([p[list(PROB_COLUMNS)].to_numpy(np.float64) for p in parts])
    counts = tuple((len(df), int(df["symbol"].nunique())) for df in frames)
    return Aligned(parts[0][[*KEYS, "label", "fwd_return", *kept[1:]]], probs, counts)


def blend_name(method: str, horizon: int) -> str:
    """A blend's default run name, ``ensemble_weighted_h5``: the method and the horizon, as a model run's
    ``lstm_h5``, so blends of another horizon never share a folder of versions."""
    return f"ensemble_{method}_h{horizon}"


def split_metrics(split: str, frame: pd.DataFrame, probs: np.ndarray, horizon: int, trading: TradingConfig) -> dict:
    """The metric suite of ``probs`` (N, 3) on the aligned rows ``frame``, booked as ``trading`` says."""
    return score_probabilities(split, probs, frame["label"].to_numpy() + 1, utc_ns(frame["datetime"]),
                               frame["fwd_return"].to_numpy(), horizon, trading.bars_per_year,
                               symbol=pd.factorize(frame["symbol"])[0], trading=trading)  # fmt: skip


def members_trading(run_dirs: list[Path], configs: list[dict], given: dict | None = None) -> TradingConfig:
    """The members' common ``trading:`` section, with the annualisation their own metrics used when it infers it;
    ``given`` keys (``ensemble blend --trading.*``) are laid over every member's section first, so they settle a
    key the members disagree on.

    Raises:
        BlendError: members booked with different settings (naming the key and two runs), or a member whose
            section is not valid.
    """
    sections, problems, checked = [], [], set()
    for run, config in zip(run_dirs, configs, strict=True):
        try:
            section = trading_section(config).as_dict()
        except ConfigError as err:
            raise BlendError(f"{run}/config.yaml: {err}") from err
        recorded = _recorded_bars_per_year(run)  # what the member's data gave (or its own stated value)
        if section["bars_per_year"] is None:  # inferred at fit time; each split's metrics record the value
            section["bars_per_year"] = recorded
        if given and given.get("bars_per_year") is not None and recorded not in checked:
            checked.add(recorded)
            try:  # the same sanity check fit applies, against what the member's timestamps gave
                check_bars_per_year(given["bars_per_year"], recorded, f"the metrics of {run}")
            except ConfigError as err:
                problems.append(str(err))
        sections.append({**section, **(given or {})})
    try:
        trading = TradingConfig(**sections[0])
    except ConfigError as err:  # a given value out of range: every problem of the section at once
        raise BlendError("; ".join([*problems, str(err)])) from err
    mismatches = []
    for run, section in zip(run_dirs[1:], sections[1:], strict=True):
        for key in sorted(trading.applicable(), key=list(section).index):  # keys the book does not read may differ
            if section[key] != sections[0][key]:
                mismatches.append(f"{run}: trading.{key} is {section[key]}, but {run_dirs[0]} has {sections[0][key]}")
    if mismatches:  # the hint is for members that disagree, not for a given value the data contradict
        problems += [*mismatches, "blend runs booked alike, or set --trading.<key>"]
    if problems:
        raise BlendError("; ".join(problems))
    return trading


def _recorded_bars_per_year(run: Path) -> float | None:
    path = run / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    return metrics.get("val/bars_per_year", metrics.get("oof/bars_per_year"))  # a walk-forward has no val/*


def blend(run_dirs: list[Path], method: str, out: Path, name: str | None = None,
          trading: TradingConfig | None = None, options: dict[str, dict] | None = None,
          root: Path | None = None) -> Path:  # fmt: skip
    """Fit ``method`` on the members' val predictions, evaluate on val and test, write a run. Test is left out
    when a member was fitted without it (``--test false``): a blend is judged on the rows all members have.

    Args:
        trading: how the blend's predictions are booked; None takes the members' common ``trading:`` section.
        options: per-method constructor options, e.g. ``{"caruana": {"size": 50}}``.
        root: the experiment folder that holds the blend and its members: ``blend.json`` and ``config.yaml`` then
            name the members relative to the blend's folder (``io.record_path``), so they move together.

    Raises:
        BlendError: fewer than two runs or one given twice, an unknown method, mixed horizons or trading sections,
            no shared rows.
        ConfigError: an option the method does not take.
    """
    factory = make_method(method, options)
    check_members(run_dirs)
    configs = [run_config(r) for r in run_dirs]
    horizons = {c["data"]["horizon"] for c in configs}
    if len(horizons) != 1:
        raise BlendError(f"runs have different horizons {sorted(horizons)}: {[str(r) for r in run_dirs]}")
    horizon = horizons.pop()
    trading = trading or members_trading(run_dirs, configs)
    val = align(run_dirs, "val")
    model = factory().fit(val.probs, val.labels)  # validation only: test never reaches a fit
    tested = all((r / "predictions" / "test.parquet").is_file() for r in run_dirs)
    scored = []  # every split scored before the run folder is claimed: a bad setting leaves no folder behind
    for split, data in (("val", val), *((("test", align(run_dirs, "test")),) if tested else ())):
        data.say_shared(run_dirs, split)
        probs = model.predict_proba(data.probs)
        df = data.frame.assign(**{c: probs[:, i].astype(np.float32) for i, c in enumerate(PROB_COLUMNS)})
        df["prediction"] = (probs.argmax(axis=1) - 1).astype(np.int8)
        df = df[[*KEYS, "label", *PROB_COLUMNS, "prediction", "fwd_return"]]
        scored.append((split, df, split_metrics(split, df, probs, horizon, trading)))
    run_dir = claim_run_dir(out / (name or blend_name(method, horizon)))
    members = [record_path(r, run_dir, root) if root is not None else str(r) for r in run_dirs]
    record = {"method": method, "members": members, "horizon": horizon, "fit_on": "val",
              "options": (options or {}).get(method, {}), "weights": getattr(model, "weights_", np.array([])).tolist()}
    atomic_write(run_dir / "config.yaml", lambda p: p.write_text(yaml.safe_dump(
        {"blend": record, "data": {"horizon": horizon}, "trading": trading.as_dict()}, sort_keys=False)))
    for split, df, metrics in scored:
        write_stage(run_dir, split, df, metrics, horizon, [], 0, trading=trading)
    update_metrics_json(run_dir, {"fit_on": "val"})  # val also early-stopped and chose the members
    write_json(run_dir / "blend.json", {**record, "state": model.state()})  # state: what an export predicts with
    return run_dir


def finished_blend(base: Path, method: str, members: list[Path], horizon: int,
                   options: dict[str, dict[str, Any]] | None, fit_on: str) -> Path | None:  # fmt: skip
    """The newest ``base/version_N`` that holds this blend, finished: its ``blend.json`` (written last, so a
    crashed fit has none) records the same method, members (the same folders, however the record names them:
    ``io.locate``), horizon, method options and ``fit_on``. A re-run of an experiment reuses it, as it skips
    finished cells; ``None`` when there is none."""
    want = {"method": method, "horizon": horizon, "fit_on": fit_on, "options": (options or {}).get(method, {})}
    folders = [Path(r).resolve() for r in members]
    for _, run in reversed(run_versions(base)):
        if (run / "blend.json").is_file():
            record = json.loads((run / "blend.json").read_text())
            found = [locate(m, run) for m in record.get("members", [])]
            same = [f.resolve() if f is not None else None for f in found] == folders
            if same and {k: record.get(k) for k in want} == want:
                return run
    return None
