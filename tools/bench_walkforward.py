"""A 6-fold LightGBM walk-forward against 6 separate ``ensemble fit`` processes on the same windows.

    python tools/bench_walkforward.py [--root data/demo] [--folds 6] [--work /tmp/bench_walkforward]

The fold plan is cut once (``ensemble.data.folds``, the walk-forward's own arithmetic); for each fold the bench
writes the rows that fold trains on, early-stops on and predicts as a train/val/test split set, which is what a
user without walk-forward would do, then times ``ensemble fit`` on each set in its own process, sequentially,
against one ``ensemble walkforward`` process. Writing those files is not timed. Both sides use the bundled
config unchanged (early stopping included), so they train the same trees: the bench checks that each fit's test
predictions equal the walk-forward's out-of-fold rows of that fold (max |dp|). Peak RSS is each process's
``ru_maxrss`` (``os.wait4``). Target: walk-forward wall time <= 0.8x the separate fits'.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.data import DEFAULT_DEMO_ROOT
from ensemble.training.artifacts import PROB_COLUMNS, utc_ns
from ensemble.training.config import resolve_config
from ensemble.walkforward.config import WalkForward
from ensemble.walkforward.runner import span_data

CONFIG = Path(__file__).parents[1] / "configs" / "lightgbm.yaml"
QUIET = ["--trainer.enable_progress_bar", "false"]


def run(cmd: list[str], log: Path) -> tuple[float, float, float]:
    """(wall s, CPU s of the child, peak RSS MiB of the child) of one command run to completion."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": "."})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)} (see {log})")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write_fold_splits(root: Path, work: Path, folds: int) -> list[Path]:
    """Each fold's train / inner-val / test-block target rows as a split set of its own; their folders."""
    config = resolve_config(CONFIG, {"data.root": str(root)})
    data = span_data(config)
    span = data.load_span(("train", "val"))
    import torch

    from ensemble.data.folds import cut_folds
    from ensemble.data.windows import valid_ends

    eligible = torch.zeros(len(span), dtype=torch.bool)
    eligible[valid_ends(span, data.seq_len)] = True
    plan = cut_folds(span, eligible.numpy(), data.horizon, WalkForward(folds=folds).spec())
    frame = pd.concat([pd.read_parquet(data.path(s)) for s in ("train", "val")], ignore_index=True)
    key = pd.Series(np.arange(len(frame)), index=pd.MultiIndex.from_arrays([frame["symbol"].astype(str),
                                                                             utc_ns(frame["datetime"])]))  # fmt: skip
    names = np.asarray(span.symbols, dtype=object)
    dirs = []
    for fold in plan:
        folder = work / "splits" / f"fold_{fold.number}"
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in (("train", fold.train), ("val", fold.val), ("test", fold.test)):
            index = pd.MultiIndex.from_arrays([names[span.symbol.numpy()[rows]], span.time.numpy()[rows]])
            frame.iloc[key.loc[index].to_numpy()].to_parquet(folder / f"{split}_scaled.parquet", index=False)
        dirs.append(folder)
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_DEMO_ROOT)
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--work", default="/tmp/bench_walkforward")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    py = [sys.executable, "-m", "ensemble.cli"]
    if not Path(args.root, "train_scaled.parquet").exists():
        subprocess.run([*py, "data", "demo", "--out", args.root], check=True, env={**os.environ, "PYTHONPATH": "."})
    fold_dirs = write_fold_splits(Path(args.root), work, args.folds)
    fits = []
    for i, folder in enumerate(fold_dirs, 1):
        fits.append(run([*py, "fit", "--config", str(CONFIG), "--data.root", str(folder), *QUIET,
                         "--tracking.save_dir", str(work / "fits"), "--tracking.name", f"fold_{i}"],
                        work / f"fit_{i}.log"))  # fmt: skip
        print(f"fit {i}: {fits[-1][0]:.1f} s wall, {fits[-1][1]:.1f} s CPU, {fits[-1][2]:.0f} MiB peak", flush=True)
    wf = run([*py, "walkforward", "--config", str(CONFIG), "--data.root", args.root, "--wf.folds", str(args.folds),
              "--wf.out", str(work / "wf"), *QUIET], work / "walkforward.log")  # fmt: skip
    oof = pd.read_parquet(work / "wf" / "oof.parquet")
    diff = 0.0
    for i in range(1, len(fold_dirs) + 1):
        (run_dir,) = (work / "fits" / f"fold_{i}").iterdir()
        mine = pd.read_parquet(run_dir / "predictions" / "test.parquet")
        theirs = oof[oof.fold == i].reset_index(drop=True)
        if len(mine) != len(theirs):
            sys.exit(f"fold {i}: the separate fit predicted {len(mine)} rows, the walk-forward {len(theirs)}")
        gap = mine[list(PROB_COLUMNS)].to_numpy() - theirs[list(PROB_COLUMNS)].to_numpy()
        diff = max(diff, float(np.abs(gap).max()))
    fit_wall, fit_cpu = sum(f[0] for f in fits), sum(f[1] for f in fits)
    print(f"\n{len(fits)} separate fits: {fit_wall:.1f} s wall, {fit_cpu:.1f} s CPU; peak RSS of one fit: "
          f"{max(f[2] for f in fits):.0f} MiB (largest fold)")  # fmt: skip
    print(f"walk-forward ({args.folds} folds): {wf[0]:.1f} s wall, {wf[1]:.1f} s CPU; peak RSS {wf[2]:.0f} MiB")
    print(f"ratio walk-forward / separate fits: {wf[0] / fit_wall:.2f}x wall, {wf[1] / fit_cpu:.2f}x CPU "
          "(target <= 0.8x)")
    print(f"peak RSS walk-forward / one fit: {wf[2] / max(f[2] for f in fits):.2f}x")
    print(f"same windows, same trees: max |p_fit - p_walkforward| = {diff:.2e}")


if __name__ == "__main__":
    main()
