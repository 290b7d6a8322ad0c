"""Blends fitted on out-of-fold predictions: members are walk-forward folders of one fold plan.

The blend's own out-of-fold predictions are forward-only (``ensemble.ensembling.forward``): the weights used on
fold f were fitted on folds before f, purged of rows whose label window reaches f. The final blend is fitted on
all out-of-fold rows (purged against the test split's first bar) and judged on the members' test predictions
(their walk-forward's final models). The result is a candidate folder like a walk-forward's: ``oof.parquet``,
``predictions/test.parquet``, ``metrics.json`` (``oof/*``, ``test/*``), plots, ``config.yaml`` and ``blend.json``
(method, members, ``fit_on: oof``, weights, provenance of every fit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ensemble.ensembling.blend import (
    KEYS,
    Aligned,
    BlendError,
    align,
    blend_name,
    check_members,
    make_method,
    members_trading,
    split_metrics,
)
from ensemble.ensembling.forward import C_GRID, Clock, fit_method, provenance
from ensemble.io import atomic_write, record_path, write_figure, write_json, write_parquet
from ensemble.metrics.config import TradingConfig
from ensemble.training.artifacts import PROB_COLUMNS, update_metrics_json, utc_ns, write_stage
from ensemble.training.runs import claim_run_dir

RECORD = "walkforward.json"  # what marks a walk-forward folder (ensemble.walkforward.runner.RECORD)
FOLD_COLUMNS = ["fold", "test_start", "test_end"]


def is_walkforward(run: Path) -> bool:
    """A walk-forward folder (it holds ``walkforward.json`` or ``oof.parquet``), not a plain run."""
    return (run / RECORD).is_file() or (run / "oof.parquet").is_file()


def walkforward_config(run: Path) -> dict[str, Any]:
    """The run config a walk-forward folder's folds were trained with.

    Raises:
        BlendError: the folder has no ``walkforward.json`` or no finished ``oof.parquet`` / ``folds.csv``.
    """
    for needed in (RECORD, "oof.parquet", "folds.csv"):
        if not (run / needed).is_file():
            raise BlendError(f"{run}: not a finished walk-forward (no {needed}); run ensemble walkforward first")
    return json.loads((run / RECORD).read_text())["config"]


def final_run(run: Path) -> str | None:
    """The walk-forward's final model run (``runs/final/version_N``, the latest), which predicted its
    ``predictions/test.parquet``: what an export of a blend of walk-forwards runs for each member; None without."""
    versions = sorted((run / "runs" / "final").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return str(versions[-1]) if versions else None


def check_same_folds(run_dirs: list[Path], configs: list[dict]) -> tuple[int, int]:
    """The members' common horizon h and purge gap (h plus the largest embargo, in bars).

    Raises:
        BlendError: members with another horizon or other fold boundaries (folds.csv test_start / test_end),
            naming the two folders.
    """
    horizons = [c["data"]["horizon"] for c in configs]
    plans = [pd.read_csv(r / "folds.csv")[FOLD_COLUMNS].astype(str) for r in run_dirs]
    for run, h, plan in zip(run_dirs[1:], horizons[1:], plans[1:], strict=True):
        if h != horizons[0]:
            raise BlendError(f"{run}: horizon {h}, but {run_dirs[0]} has {horizons[0]}; blend one horizon only")
        if not plan.equals(plans[0]):
            raise BlendError(f"{run}: its folds (folds.csv test_start/test_end) differ from {run_dirs[0]}'s; "
                             "blend walk-forwards of one fold plan only")  # fmt: skip
    embargo = max(json.loads((r / RECORD).read_text())["wf"].get("embargo", 0) for r in run_dirs)
    return horizons[0], horizons[0] + embargo


def _predictions(data: Aligned, probs: np.ndarray) -> pd.DataFrame:
    """A predictions frame (PREDICTION_COLUMNS, plus ``fold`` when the rows have one) of blended ``probs``."""
    df = data.frame.assign(**{c: probs[:, i].astype(np.float32) for i, c in enumerate(PROB_COLUMNS)})
    df["prediction"] = (probs.argmax(axis=1) - 1).astype(np.int8)
    extra = ["fold"] if "fold" in df else []
    return df[[*KEYS, "label", *PROB_COLUMNS, "prediction", "fwd_return", *extra]]


@dataclass
class OofFit:
    """A fitted out-of-fold blend, before anything is written: ``record`` is blend.json's content."""

    record: dict[str, Any]
    horizon: int
    trading: TradingConfig
    oof: pd.DataFrame  # the forward-only predictions of folds 2..F (PREDICTION_COLUMNS + fold)
    test: pd.DataFrame | None  # the final blend's predictions on the members' shared test rows


def fit_oof_blend(run_dirs: list[Path], method: str, trading: TradingConfig | None = None,
                  options: dict[str, dict[str, Any]] | None = None, guard: bool = True) -> OofFit:  # fmt: skip
    """Fit ``method`` on the walk-forwards ``run_dirs``' out-of-fold predictions (forward-only per fold, then the
    final blend on all of them) and predict their test rows; nothing is written.

    Args:
        trading: how the blend is booked; None takes the members' common ``trading:`` section.
        options: per-method constructor options, e.g. ``{"caruana": {"size": 50, "init": 1, "bags": 5}}``.
        guard: the forward-only / purge guard; False (tests only) lets every fit see every row.

    Raises:
        BlendError: fewer than two members or one given twice, a member that is not a finished walk-forward, other
            folds or horizon, mixed trading sections, no shared rows, one fold only.
        ConfigError: an unknown option.
    """
    check_members(run_dirs)
    factory = make_method(method, options)  # a bad method or option fails before any file is read
    configs = [walkforward_config(r) for r in run_dirs]
    horizon, gap = check_same_folds(run_dirs, configs)
    trading = trading or members_trading(run_dirs, configs)
    oof = align(run_dirs, "oof", "oof.parquet")
    missing = [str(r) for r in run_dirs if not (r / "predictions" / "test.parquet").is_file()]
    if missing and len(missing) < len(run_dirs):  # all missing: span all, no final models; some: a broken member
        raise BlendError(f"{', '.join(missing)}: no final-model test predictions (predictions/test.parquet), which "
                         "the other members have; re-run its walk-forward")  # fmt: skip
    tested = not missing
    test = align(run_dirs, "test") if tested else None
    for split, data in (("oof", oof), ("test", test)):
        if data is not None:
            data.say_shared(run_dirs, split)
    time, labels, fold = utc_ns(oof.frame["datetime"]), oof.labels, oof.frame["fold"].to_numpy()
    if len(np.unique(fold)) < 2:
        raise BlendError(f"{run_dirs[0]}: an out-of-fold blend needs at least two folds (fold 1 only fits)")
    clock = Clock.build(oof.frame["symbol"].to_numpy(), time, horizon, gap,
                        *((test.frame["symbol"].to_numpy(), utc_ns(test.frame["datetime"])) if test else ()))
    record: dict[str, Any] = {"method": method, "members": [str(r) for r in run_dirs], "horizon": horizon,
                              "fit_on": "oof", "options": (options or {}).get(method, {})}  # fmt: skip
    test_first = int(utc_ns(test.frame["datetime"]).min()) if test else None
    given = (options or {}).get(method, {})
    # stacked's C given as an option is used on every fold and for the final fit; otherwise forward validation
    # chooses it from C_GRID
    grid = (float(given["C"]),) if method == "stacked" and "C" in given else C_GRID
    fitted = fit_method(method, factory, oof.probs, labels, fold, clock, test_first, guard, grid)
    forward, final, fit = fitted.forward, fitted.final, fitted.final_rows
    record.update(fitted.record)
    record["provenance"] = {"folds": forward.provenance}
    if test_first is not None:
        record["provenance"]["test"] = provenance(time, clock, fit, test_first)
    record["weights"] = getattr(final, "weights_", np.array([])).tolist()
    record["member_final_runs"] = [final_run(r) for r in run_dirs]  # the models behind the test predictions
    if hasattr(final, "state"):  # the fitted blend as JSON (REGISTER's methods.state), for predict --from
        record["state"] = final.state()
    scored = Aligned(oof.frame[forward.scored].reset_index(drop=True), oof.probs[:, forward.scored])
    test_df = _predictions(test, final.predict_proba(test.probs)) if test is not None else None
    return OofFit(record, horizon, trading, _predictions(scored, forward.probs[forward.scored]), test_df)


def oof_blend(run_dirs: list[Path], method: str, out: Path, name: str | None = None,
              trading: TradingConfig | None = None, options: dict[str, dict[str, Any]] | None = None,
              guard: bool = True, root: Path | None = None) -> Path:  # fmt: skip
    """``fit_oof_blend``, scored and written as a candidate folder ``<out>/<name>/version_N`` (name default
    ``ensemble_<method>_h<horizon>``); its path. ``root``: the experiment folder that holds the blend and its
    members; its ``blend.json`` then names them relative to the blend's folder (``record_members``), so they move
    together.

    Raises:
        As ``fit_oof_blend``; nothing is written when it raises.
    """
    fitted = fit_oof_blend(run_dirs, method, trading, options, guard)
    metrics = {**_score("oof", fitted.oof, fitted), "fit_on": "oof", "folds": int(fitted.oof["fold"].nunique()),
               "rows": len(fitted.oof)}  # fmt: skip
    test_stage = (fitted.test, _score("test", fitted.test, fitted)) if fitted.test is not None else None
    # all scored first: an error leaves no folder
    run_dir = claim_run_dir(out / (name or blend_name(method, fitted.horizon)))
    record = record_members(fitted.record, run_dir, root)
    _write(run_dir, record, fitted.horizon, fitted.trading, fitted.oof, metrics, test_stage)
    return run_dir


def record_members(record: dict[str, Any], run_dir: Path, root: Path | None) -> dict[str, Any]:
    """A blend record whose member folders (``members``, and ``member_final_runs`` when there) inside ``root``
    are named relative to the blend's folder ``run_dir`` (``io.record_path``); ``record`` as is without ``root``."""
    if root is None:
        return record
    out = {**record, "members": [record_path(m, run_dir, root) for m in record["members"]]}
    if "member_final_runs" in record:
        out["member_final_runs"] = [m and record_path(m, run_dir, root) for m in record["member_final_runs"]]
    return out


def _score(split: str, df: pd.DataFrame, fitted: OofFit) -> dict[str, Any]:
    probs = df[list(PROB_COLUMNS)].to_numpy(np.float64)
    return split_metrics(split, df, probs, fitted.horizon, fitted.trading)


def _write(run_dir: Path, record: dict[str, Any], horizon: int, trading: TradingConfig, oof_df: pd.DataFrame,
           metrics: dict[str, Any], test_stage: tuple[pd.DataFrame, dict] | None) -> None:  # fmt: skip
    """The candidate folder's files (see the module docstring)."""
    import matplotlib.pyplot as plt

    from ensemble.walkforward.plots import oof_equity_figure

    config = {"blend": {k: record[k] for k in ("method", "members", "horizon", "fit_on")},
              "data": {"horizon": horizon}, "trading": trading.as_dict()}  # fmt: skip
    atomic_write(run_dir / "config.yaml", lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False)))
    write_parquet(run_dir / "oof.parquet", oof_df)
    update_metrics_json(run_dir, metrics)
    if test_stage is not None:
        write_stage(run_dir, "test", *test_stage, horizon, [], 0, trading=trading, model=run_dir.parent.name)
    starts = [int(utc_ns(part["datetime"]).min()) for _, part in oof_df.groupby("fold")]
    fig = oof_equity_figure(oof_df, horizon, starts, f"{run_dir.parent.name}: forward-only out-of-fold equity, "
                            "fold boundaries dotted", trading)  # fmt: skip
    write_figure(run_dir / "plots" / "oof_equity_curve.png", fig)
    plt.close(fig)
    write_json(run_dir / "blend.json", record)


def fit_last_before_scored(record: dict[str, Any]) -> list[str]:
    """The fits in a ``blend.json`` record whose data reached the rows they score: each entry names the fit
    (``fold 3``, ``test``) whose ``fit_last`` or ``label_last`` is not earlier than its ``scored_first``."""
    fits = {f"fold {k}": v for k, v in record["provenance"]["folds"].items()}
    if "test" in record["provenance"]:
        fits["test"] = record["provenance"]["test"]
    return [name for name, p in fits.items()
            if not (pd.Timestamp(p["fit_last"]) < pd.Timestamp(p["scored_first"])
                    and pd.Timestamp(p["label_last"]) < pd.Timestamp(p["scored_first"]))]  # fmt: skip

