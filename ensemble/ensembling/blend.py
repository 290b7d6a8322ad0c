"""Blend finished runs into an ordinary run: predictions, metrics.json, plots, config.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ensemble.errors import EnsembleError
from ensemble.io import atomic_write, write_json
from ensemble.metrics.arrays import score_probabilities
from ensemble.training.artifacts import PROB_COLUMNS, utc_ns, write_stage
from ensemble.training.runs import claim_run_dir

KEYS = ["datetime", "symbol"]


class BlendError(EnsembleError):
    """Members that cannot be blended; the message names the runs."""


@dataclass
class Aligned:
    """Rows every member predicted, in one order."""

    frame: pd.DataFrame  # datetime, symbol, label, fwd_return
    probs: np.ndarray  # (M, N, 3)

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy() + 1  # -1/0/1 -> 0/1/2


def run_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise BlendError(f"{run_dir}: not a finished run (no config.yaml)")
    return yaml.safe_load(path.read_text())


def align(run_dirs: list[Path], split: str) -> Aligned:
    frames = []
    for run in run_dirs:
        path = run / "predictions" / f"{split}.parquet"
        if not path.is_file():
            raise BlendError(f"{run}: no predictions/{split}.parquet; finish the run first")
        frames.append(pd.read_parquet(path))
    common = frames[0][KEYS]
    for df in frames[1:]:  # members with longer windows predict fewer rows: keep the rows all have
        common = common.merge(df[KEYS], on=KEYS)
    if common.empty:
        raise BlendError(f"runs share no {split} rows: {[str(r) for r in run_dirs]}")
    common = common.sort_values(KEYS, kind="stable").reset_index(drop=True)
    parts = [common.merge(df, on=KEYS, how="left") for df in frames]
    for run, part in zip(run_dirs[1:], parts[1:], strict=True):
        if not np.array_equal(part["label"].to_numpy(), parts[0]["label"].to_numpy()):
            raise BlendError(f"{run}: its {split} labels differ from {run_dirs[0]}; blend runs of one data set "
                             f"and horizon only")
    probs = np.stack([p[list(PROB_COLUMNS)].to_numpy(np.float64) for p in parts])
    return Aligned(parts[0][[*KEYS, "label", "fwd_return"]], probs)


def split_metrics(split: str, frame: pd.DataFrame, probs: np.ndarray, horizon: int, bars_per_year: float) -> dict:
    return score_probabilities(split, probs, frame["label"].to_numpy() + 1, utc_ns(frame["datetime"]),
                               frame["fwd_return"].to_numpy(), horizon, bars_per_year,
                               symbol=pd.factorize(frame["symbol"])[0])  # fmt: skip


def blend(run_dirs: list[Path], method: str, out: Path, name: str | None = None) -> Path:
    """Fit ``method`` on the members' val predictions, evaluate on val and test, write a run. Test is left out
    when a member was fitted without it (``--test false``): a blend is judged on the rows all members have."""
    from ensemble.ensembling.methods import METHODS

    if method not in METHODS:
        raise BlendError(f"unknown blend method '{method}'; use one of {', '.join(METHODS)}")
    if len(run_dirs) < 2:
        raise BlendError("a blend needs at least two runs")
    configs = [run_config(r) for r in run_dirs]
    horizons = {c["data"]["horizon"] for c in configs}
    if len(horizons) != 1:
        raise BlendError(f"runs have different horizons {sorted(horizons)}: {[str(r) for r in run_dirs]}")
    horizon, bars_per_year = horizons.pop(), float(configs[0]["data"].get("bars_per_year", 252.0))
    val = align(run_dirs, "val")
    model = METHODS[method]().fit(val.probs, val.labels)  # validation only: test never reaches a fit
    run_dir = claim_run_dir(out / (name or f"ensemble_{method}"))
    record = {"method": method, "members": [str(r) for r in run_dirs], "horizon": horizon,
              "weights": getattr(model, "weights_", np.array([])).tolist()}
    atomic_write(run_dir / "config.yaml", lambda p: p.write_text(yaml.safe_dump(
        {"blend": record, "data": {"horizon": horizon, "bars_per_year": bars_per_year}}, sort_keys=False)))
    tested = all((r / "predictions" / "test.parquet").is_file() for r in run_dirs)
    for split, data in (("val", val), *((("test", align(run_dirs, "test")),) if tested else ())):
        probs = model.predict_proba(data.probs)
        df = data.frame.assign(**{c: probs[:, i].astype(np.float32) for i, c in enumerate(PROB_COLUMNS)})
        df["prediction"] = (probs.argmax(axis=1) - 1).astype(np.int8)
        df = df[[*KEYS, "label", *PROB_COLUMNS, "prediction", "fwd_return"]]
        write_stage(run_dir, split, df, split_metrics(split, df, probs, horizon, bars_per_year), horizon, [], 0)
    write_json(run_dir / "blend.json", record)
    return run_dir
