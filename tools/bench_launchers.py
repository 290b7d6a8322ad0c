"""Launchers on a 4-cell tree grid (xgboost, lightgbm x horizons 5, 20), in one run: ``sequential`` against
``local`` with 2 workers against ``ray`` with 2 CPUs, then sequential and local again beside a competing
busy-loop process.

    python tools/bench_launchers.py [--symbols 20] [--rows 3000] [--rounds 60] [--skip-ray] [--skip-load]

Every run is a fresh ``ensemble experiment`` process on the same synthetic panel (``tests/panels.py``) in a
new folder, so each pays the same start-up (imports, one fit process per cell). Ray's start-up is timed on
its own (``ray.init`` of a 2-CPU local instance, then ``ray.shutdown``) and subtracted to give ray "once up".
Each run's leaderboard is checked equal to the sequential one (the same numbers whatever the launcher).
Threads: one per cell process under local/ray (2 cores / 2 workers), two under sequential, as the default
``--threads`` gives them; ``--threads N`` forces N for all.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from launch_grid import board  # noqa: E402
from panels import write_splits  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
       "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip


def experiment(splits: Path, out: Path, rounds: int, threads: int | None, *launcher: str) -> float:
    """Wall seconds of one ``ensemble experiment`` process over the grid."""
    fit = f'[--trainer.max_epochs, "{max(1, rounds // 10)}", --trainer.rounds_per_epoch, "10"]'
    args = [sys.executable, "-m", "ensemble.cli", "experiment", "--name", "bench", "--models", "[xgboost, lightgbm]",
            "--horizons", "[5, 20]", "--data_root", str(splits), "--configs_dir", str(ROOT / "configs"),
            "--out", str(out), "--fit_args", fit, "--blends", "[]",
            "--model_args", '{lightgbm: [--model.init_args.min_data_in_leaf, "20"]}',
            *(["--threads", str(threads)] if threads else []), *launcher]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(args, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(f"  {' '.join(launcher) or 'sequential'}: {wall:.1f} s", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(launcher) or 'sequential'} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall


def ray_startup() -> float:
    """Seconds to start and stop a 2-CPU local Ray instance, in a fresh process as the launcher does."""
    code = ("import time; t = time.perf_counter(); import ray; "
            "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False); "
            "ray.shutdown(); print(time.perf_counter() - t)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--rows", type=int, default=3000, help="train rows per symbol (val and test: a fifth each)")
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--rounds", type=int, default=60, help="boosting rounds per cell")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        splits = write_splits(tmp_path / "splits", n_symbols=a.symbols, n_features=a.features,
                              rows=(a.rows, a.rows // 5, a.rows // 5))  # fmt: skip
        print(f"grid: 4 cells (xgboost, lightgbm x h5, h20), {a.symbols} symbols x {a.rows} train rows x "
              f"{a.features} features, {a.rounds} rounds; cores usable: {len(os.sched_getaffinity(0))}")
        local = ("--launcher", "local", "--launcher.workers", "2")
        t = {"sequential": experiment(splits, tmp_path / "seq", a.rounds, a.threads)}
        t["local"] = experiment(splits, tmp_path / "local", a.rounds, a.threads, *local)
        reference = board(tmp_path / "seq")
        assert board(tmp_path / "local").equals(reference), "local's leaderboard differs from sequential's"
        if not a.skip_ray:
            t["ray_startup"] = ray_startup()
            t["ray"] = experiment(splits, tmp_path / "ray", a.rounds, a.threads, "--launcher", "ray",
                                  "--launcher.workers", "2")  # fmt: skip
            assert board(tmp_path / "ray").equals(reference), "ray's leaderboard differs from sequential's"
        if not a.skip_load:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                t["sequential+load"] = experiment(splits, tmp_path / "seq_load", a.rounds, a.threads)
                t["local+load"] = experiment(splits, tmp_path / "local_load", a.rounds, a.threads, *local)
            finally:
                busy.kill()
                busy.wait()
    for name, seconds in t.items():
        print(f"{name:<18}{seconds:>8.1f} s")
    print(f"local / sequential            {t['local'] / t['sequential']:.2f}x   (target <= 0.75)")
    if "ray" in t:
        up = t["ray"] - t["ray_startup"]
        print(f"ray / local                   {t['ray'] / t['local']:.2f}x")
        print(f"ray once up / local           {up / t['local']:.2f}x   (target <= 1.15; Ray start-up "
              f"{t['ray_startup']:.1f} s)")  # fmt: skip
    if "local+load" in t:
        print(f"under a busy loop: local / sequential {t['local+load'] / t['sequential+load']:.2f}x")


if __name__ == "__main__":
    main()
