"""A LightGBM study through ``ensemble tune``, with and without pruning, against a bare Optuna loop
calling the same fit, all in one run on the same data, search space and sampler seed.

Prints each study's wall time and trial states, and the tuning layer's overhead per trial:
(ensemble tune, no pruning) - (bare Optuna loop + the same TreeTrainer fit), over the trial count.
A second bare loop also writes each run's artifacts (val/test evaluation, predictions, plots), and the
layer's once-per-study work (key checks before trial 1, the report and best.yaml after) is timed alone,
so the overhead splits into artifacts, fixed cost and per-trial cost.

    python tools/bench_tune.py [--trials 20] [--config configs/lightgbm.yaml] [--root data/demo]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

import optuna

from ensemble.training.config import resolve_config
from ensemble.training.family import build
from ensemble.tuning.objective import check_keys
from ensemble.tuning.report import write_report
from ensemble.tuning.space import SearchSpace
from ensemble.tuning.study import TuneConfig, tune, write_best_config


def fit_args(config: str, root: str, save_dir: Path) -> dict:
    return resolve_config(config, {"data.root": root, "tracking.save_dir": str(save_dir)})


def timed_study(base: dict, space: str, trials: int, pruner: str, out: Path) -> tuple[float, optuna.Study]:
    cfg = TuneConfig(n_trials=trials, search_space=space, storage=f"sqlite:///{out / 'optuna.db'}",
                     study_name=f"bench_{pruner}", pruner=pruner, seed=0, out=str(out / pruner))
    start = time.perf_counter()
    study = tune(cfg, resolve_config(base, {"trainer.logger": False}))
    return time.perf_counter() - start, study


def bare_loop(base: dict, space: SearchSpace, trials: int, artifacts: bool) -> tuple[float, optuna.Study]:
    """What a user would write by hand: an in-memory study, no pruning, the same fit per trial."""

    def objective(trial: optuna.Trial) -> float:
        job = build(base, {"trainer.logger": False, **space.suggest(trial)})
        job.fit() if artifacts else job.train()
        return job.best_score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start, study


def states(study: optuna.Study) -> str:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--config", default="configs/lightgbm.yaml")
    ap.add_argument("--space", default=None, help="default: configs/search_spaces/<config name>.yaml")
    ap.add_argument("--root", default="data/demo")
    args = ap.parse_args()
    space_path = args.space or str(Path(args.config).parent / "search_spaces" / Path(args.config).name)
    space = SearchSpace.from_yaml(space_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)

    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()) as quiet:
        out = Path(tmp)
        bare_loop(fit_args(args.config, args.root, out / "warm"), space, 1, artifacts=True)  # imports, page cache
        for label, run in [
            ("bare Optuna + fit", lambda: bare_loop(fit_args(args.config, args.root, out / "bare"), space,
                                                    args.trials, artifacts=False)),
            ("bare Optuna + fit + artifacts", lambda: bare_loop(fit_args(args.config, args.root, out / "bare_art"),
                                                                space, args.trials, artifacts=True)),
            ("ensemble tune, no pruning", lambda: timed_study(fit_args(args.config, args.root, out / "none"),
                                                              space_path, args.trials, "none", out)),
            ("ensemble tune, median pruner", lambda: timed_study(fit_args(args.config, args.root, out / "median"),
                                                                 space_path, args.trials, "median", out)),
        ]:
            wall, study = run()
            rows.append((label, wall, study))
            line = f"{label:32s} {wall:8.1f} s  best {study.best_value:.4f}  trials: {states(study)}"
            print(line, file=sys.stderr, flush=True)  # stdout is muted: each run prints its metrics table
        quiet.truncate(0)

        # the layer's once-per-study work, timed alone: key checks before trial 1, report and best.yaml after
        start = time.perf_counter()
        check_keys(resolve_config(fit_args(args.config, args.root, out / "k"), {"trainer.logger": False}), space)
        write_report(rows[2][2], out / "again")
        write_best_config(rows[2][2], out / "again" / "best.yaml")
        fixed = time.perf_counter() - start

    (_, bare, s_bare), (_, bare_art, _), (_, ours, s_ours), (_, pruned, s_pruned) = rows
    n = args.trials
    same = [a.params for a in s_bare.trials] == [b.params for b in s_ours.trials]
    print(f"\n{n} trials of {Path(args.config).stem} on {args.root}; same params in bare and tuned: {same}")
    print(f"artifacts per trial (val/test eval, predictions, plots): {(bare_art - bare) / n:6.2f} s")
    print(f"tuning layer, once per study (key checks, report, best.yaml): {fixed:6.2f} s")
    print(f"tuning layer per trial (storage, pruning callback, run names):  {(ours - bare_art - fixed) / n:6.2f} s")
    print(f"ratio ensemble tune / bare loop (no pruning):             {ours / bare:6.3f}")
    n_pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in s_pruned.trials)
    print(f"pruning: {n_pruned}/{n} trials pruned, wall {pruned:.1f} s vs {ours:.1f} s ({pruned / ours:.2f}x); "
          f"best {s_pruned.best_value:.4f} vs {s_ours.best_value:.4f}")


if __name__ == "__main__":
    main()
