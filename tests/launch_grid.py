"""A tiny deterministic tree grid (xgboost, lightgbm x horizons 5, 20) for launcher tests and the benchmark:
few rounds, one thread, the same seeds, so every launcher must give the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

CONFIGS = str(Path(__file__).parents[1] / "configs")
MODELS = "[xgboost, lightgbm]"
FIT = '[--trainer.max_epochs, "3", --trainer.rounds_per_epoch, "4"]'
MODEL_ARGS = '{lightgbm: [--model.init_args.min_data_in_leaf, "5"], xgboost: [--model.init_args.min_child_weight, "1"]}'
TIMINGS = ("fit/", "time", "rss")  # metric names that measure the run, not the model


def grid_args(splits: Path, out: Path, *extra: str, models: str = MODELS, fit: str = FIT) -> list[str]:
    """``ensemble experiment`` arguments for the grid under ``out``; ``extra`` adds launcher flags."""
    return ["experiment", "--name", "grid", "--models", models, "--horizons", "[5, 20]",
            "--data_root", str(splits), "--configs_dir", CONFIGS, "--out", str(out), "--fit_args", fit,
            "--model_args", MODEL_ARGS, "--blends", "[mean]", "--threads", "1", *extra]  # fmt: skip


def board(out: Path) -> pd.DataFrame:
    """The leaderboard without its cost columns and run folders (they differ between runs of the same grid)."""
    table = pd.read_csv(out / "leaderboard.csv")
    keep = [c for c in table.columns if c != "run_dir" and not any(t in c for t in TIMINGS)]
    return table[keep].sort_values(["kind", "model", "horizon"]).reset_index(drop=True)


def run_contents(run: Path) -> dict[str, object]:
    """What a run folder holds, comparable across runs: its file names, its metrics without timings, its
    predictions, and its config without the save dir."""
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "events.out" not in p.name)
    metrics = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items()
               if not any(t in k for t in TIMINGS)}  # fmt: skip
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["tracking"].pop("save_dir", None)
    preds = pd.read_parquet(run / "predictions" / "test.parquet")
    return {"files": files, "metrics": metrics, "config": config, "predictions": preds.to_dict("list")}


def pid_cell(spec, slot):
    """A launcher's ``run_one`` that trains nothing: the cell's result names the process that ran it (a Ray
    worker's, on a cluster), so a test can see a launcher reach its workers without fitting anything."""
    import os

    from ensemble.launchers import CellResult

    return CellResult(spec.key, 0, f"pid {os.getpid()}", 0.0)
