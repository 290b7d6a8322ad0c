"""Mutation testing, small and home-made: plant one deliberate fault at a time and check a test fails.

Each mutant replaces one exact snippet of one module (it must occur exactly once, so a refactor that moves
the code makes the mutant fail loudly instead of silently testing nothing). The mutant is applied to a
copy of the tracked tree in a temp folder, and only that module's test files run there, with ``-x``, so a
killed mutant stops at its first failing test. Subprocesses the tests start inherit ``PYTHONPATH`` and so
run the mutated copy too.

    python tools/mutants.py                  # every mutant; exit 1 if one survives that is not in HARMLESS
    python tools/mutants.py --only windows   # mutants whose id contains "windows"
    python tools/mutants.py --list           # ids and descriptions, no run

Add a module by adding its line to TESTS and its mutants to MUTANTS. Surviving mutants that are harmless
are listed in HARMLESS with the reason, and in docs/mutants.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> the test files that guard it (run for each of its mutants)
TESTS: dict[str, list[str]] = {
    "ensemble/data/windows.py": ["tests/test_windows.py"],
    "ensemble/data/contract.py": ["tests/test_data_contract.py", "tests/test_contract_roles.py"],
    "ensemble/metrics/classification.py": ["tests/test_metrics.py", "tests/test_classification_reference.py"],
    "ensemble/metrics/book.py": ["tests/test_trading_metrics.py", "tests/test_trading_properties.py"],
    "ensemble/ensembling/methods.py": ["tests/test_blend_methods.py", "tests/test_blend_selection.py",
                                       "tests/test_blend.py"],
    "ensemble/metrics/stats.py": ["tests/test_overfitting_stats.py"],
    "ensemble/metrics/overfitting.py": ["tests/test_overfitting_stats.py"],
    "ensemble/metrics/calibration.py": ["tests/test_calibration.py"],
    "ensemble/experiments/leaderboard.py": ["tests/test_leaderboard.py"],
    "ensemble/training/artifacts.py": ["tests/test_predictions_source.py"],
    "ensemble/data/split_data.py": ["tests/test_device_precision.py"],
}


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str
    old: str
    new: str
    what: str
    tests: tuple[str, ...] = ()  # instead of the module's TESTS, where only a slower test can see the fault


W, C, K = "ensemble/data/windows.py", "ensemble/data/contract.py", "ensemble/metrics/classification.py"
B, LB, A = "ensemble/ensembling/methods.py", "ensemble/experiments/leaderboard.py", "ensemble/training/artifacts.py"
DM = "ensemble/data/split_data.py"
BK = "ensemble/metrics/book.py"
ST, OV, CAL = "ensemble/metrics/stats.py", "ensemble/metrics/overfitting.py", "ensemble/metrics/calibration.py"

MUTANTS: list[Mutant] = [
    # the trading book: the position's side, costs, the top-k legs, turnover
    Mutant("book-side-flipped", BK, "side = (probs.argmax(dim=1) - 1).to(probs.dtype)",
           "side = (1 - probs.argmax(dim=1)).to(probs.dtype)", "long and short swapped"),
    Mutant("book-costs-added", BK, "return self.gross - cost_rate * self.turnover",
           "return self.gross + cost_rate * self.turnover", "costs credited instead of charged"),
    Mutant("book-prob-diff-reversed", BK, "return probs[:, 2] - probs[:, 0]", "return probs[:, 0] - probs[:, 2]",
           "prob_diff sizing trades against the score"),
    Mutant("book-topk-legs-swapped", BK, "leg = torch.where(rank >= size - k, 1.0, torch.where(rank < k, -1.0, 0.0))",
           "leg = torch.where(rank >= size - k, -1.0, torch.where(rank < k, 1.0, 0.0))",
           "top-k goes short the best scores"),
    Mutant("book-turnover-no-abs", BK, "index_add_(0, g, (w2 - previous).abs())", "index_add_(0, g, (w2 - previous))",
           "turnover nets buys against sells"),
    # windows: look-ahead, symbol crossing, off-by-one, DDP sharding, shuffling, batch fields
    Mutant("windows-loader-lookahead", W, '"x": gather_windows(p.features, e, self.seq_len)',
           '"x": gather_windows(p.features, e + 1, self.seq_len)', "loader serves windows one row ahead"),
    Mutant("windows-offsets-ahead", W, "torch.arange(1 - seq_len, 1, device=ends.device)",
           "torch.arange(2 - seq_len, 2, device=ends.device)", "window ends one row after its target"),
    Mutant("windows-offsets-lag", W, "torch.arange(1 - seq_len, 1, device=ends.device)",
           "torch.arange(-seq_len, 0, device=ends.device)", "window ends one row before its target"),
    Mutant("windows-tabular-ahead", W, "return features.index_select(0, ends).unsqueeze(1)",
           "return features.index_select(0, ends + 1).unsqueeze(1)", "seq_len=1 rows one ahead"),
    Mutant("windows-ends-cross-symbol", W, "ok = (position >= seq_len - 1)", "ok = (position >= seq_len - 2)",
           "a window may start in the previous symbol"),
    Mutant("windows-ends-context-target", W, "ok = (position >= seq_len - 1) & ~panel.is_context",
           "ok = (position >= seq_len - 1)", "borrowed context rows become targets"),
    Mutant("windows-ends-drop-class0", W, "ok &= panel.label >= 0", "ok &= panel.label > 0",
           "'short' rows never targets"),
    Mutant("windows-label-next-row", W, '"y": p.label.index_select(0, e)', '"y": p.label.index_select(0, e + 1)',
           "target is the next row's label"),
    Mutant("windows-fwd-return-next-row", W, '"fwd_return": p.fwd_return.index_select(0, e)',
           '"fwd_return": p.fwd_return.index_select(0, e + 1)', "fwd_return of the next row"),
    Mutant("windows-symbol-swapped", W, '"symbol": p.symbol.index_select(0, e)',
           '"symbol": p.symbol.flip(0).index_select(0, e)', "batch symbols from the other end"),
    Mutant("windows-weight-next-row", W, '"weight": p.weight.index_select(0, e)',
           '"weight": p.weight.index_select(0, e + 1)', "sample weight of the next row"),
    Mutant("windows-shard-ceil", W, "per_rank = n // world_size", "per_rank = -(-n // world_size)",
           "training shards overlap / differ in length"),
    Mutant("windows-shard-eval-overlap", W, "lo, hi = rank * n // world_size, (rank + 1) * n // world_size",
           "lo, hi = rank * n // world_size, (rank + 1) * n // world_size + 1", "evaluation shards overlap"),
    Mutant("windows-no-reshuffle", W, "manual_seed(self.seed * 1_000_003 + epoch)",
           "manual_seed(self.seed * 1_000_003)", "every epoch in the same order"),
    Mutant("windows-len-floor", W, "return -(-self._num_samples() // self.batch_size)",
           "return self._num_samples() // self.batch_size", "len() drops the last partial batch"),
    # contract: what may become a feature
    Mutant("contract-fwd-return-feature", C, '"label_*", "fwd_return_*", "sample_weight_*"',
           '"label_*", "sample_weight_*"', "forward returns become features (leak)"),
    Mutant("contract-exclude-ignored", C, "if any(fnmatchcase(name, p) for p in exclude):",
           "if any(fnmatchcase(name, p) for p in exclude[1:]):", "the first user exclusion is ignored"),
    Mutant("contract-string-feature", C, "or pa.types.is_boolean(dtype)", "or pa.types.is_string(dtype)",
           "a string column becomes a feature"),
    Mutant("contract-missing-only", C, "if missing or extra:", "if missing:", "extra features accepted"),
    Mutant("contract-no-label-ok", C, "if not labels and require_label:", "if not labels and not require_label:",
           "a split without labels accepted"),
    Mutant("contract-horizon-label-only", C, '(("label", self.labels), ("fwd_return", self.fwd_returns))',
           '(("label", self.labels),)', "a missing fwd_return column accepted"),
    # classification metrics
    Mutant("metrics-logloss-sign", K, "return -probs.double().gather(", "return probs.double().gather(",
           "log loss sign flipped"),
    Mutant("metrics-logloss-count", K, "self.count += target.numel()", "self.count += 1",
           "log loss divides by batches, not samples"),
    Mutant("metrics-logloss-class", K, "gather(1, target.long()[:, None])",
           "gather(1, (2 - target.long())[:, None])", "log loss reads the mirrored class"),
    Mutant("metrics-logloss-eps", K, "def __init__(self, eps: float = 1e-7", "def __init__(self, eps: float = 1e-3",
           "log loss clipped at 1e-3"),
    Mutant("metrics-logloss-ddp-mean", K, '"nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"',
           '"nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="mean"',
           "the suite's log-loss sum averaged across ranks", ("tests/test_metrics_ddp.py",)),
    Mutant("metrics-balanced-absent", K, "mean_where(recall, true > 0)", "recall.mean()",
           "absent classes count as recall 0",
           ("tests/test_metrics.py", "tests/test_first_hour_metrics.py")),
    Mutant("metrics-f1-weighted", K, "mean_where(f1, predicted + true > 0)", "(f1 * true).sum() / true.sum()",
           "macro F1 weighted by support"),
    Mutant("metrics-class-names-reversed", K, "for name in self.class_names]",
           "for name in reversed(self.class_names)]", "per-class scores under the wrong names"),
    Mutant("metrics-accuracy-macro", K, "ratio(tp.sum(), rows)", "recall.mean()", "accuracy averaged per class"),
    # blend methods
    Mutant("blend-grad-sign", B, "grad = -(own @ ((q > _EPS) / clipped))", "grad = (own @ ((q > _EPS) / clipped))",
           "weighted blend climbs the loss"),
    Mutant("blend-bounds", B, "bounds=[(0.0, 1.0)] * m", "bounds=[(-1.0, 1.0)] * m", "weights leave the simplex"),
    Mutant("blend-mean-weights", B, "np.full(val_probs.shape[0], 1.0 / val_probs.shape[0])",
           "np.full(val_probs.shape[0], 1.0 / (val_probs.shape[0] + 1))", "mean blend does not sum to one"),
    Mutant("blend-stack-class-columns", B, "out[:, self.model_.classes_] =",
           "out[:, : len(self.model_.classes_)] =", "stack's probabilities under the wrong classes"),
    Mutant("blend-stack-member-order", B, ".transpose(1, 0, 2).reshape(probs.shape[1], -1)",
           ".transpose(1, 2, 0).reshape(probs.shape[1], -1)", "stack features class-major, not member-major"),
    Mutant("blend-logloss-class", B, "probs[np.arange(len(labels)), labels]",
           "probs[np.arange(len(labels)), 2 - labels]", "log loss reads the mirrored class"),
    Mutant("blend-start-corner", B, "np.full(m, 1.0 / m), jac=True", "np.eye(m)[0], jac=True",
           "weighted blend starts at member 0"),
    Mutant("caruana-tie-highest-index", B, "best = int(np.flatnonzero(exact <= exact.min() + _TIE)[0])",
           "best = int(np.flatnonzero(exact <= exact.min() + _TIE)[-1])", "ties go to the highest index"),
    Mutant("caruana-longest-prefix", B, "length = int(np.flatnonzero(losses <= losses.min() + _TIE)[0])",
           "length = int(np.flatnonzero(losses <= losses.min() + _TIE)[-1])", "the longer of two equal prefixes"),
    Mutant("caruana-bags-by-length", B, "weights += bag_counts / length / len(bags)",
           "weights += bag_counts / len(bags)", "a bag's vote grows with its prefix length"),
    Mutant("best-highest-loss", B, "self.weights_[np.flatnonzero(losses <= losses.min() + _TIE)[0]] = 1.0",
           "self.weights_[int(np.argmax(losses))] = 1.0", "best picks the worst member"),
    # selection-bias statistics and calibration
    Mutant("dsr-gamma-swapped", ST, "((1 - EULER_GAMMA) * inv(1 - 1 / n_trials)",
           "(EULER_GAMMA * inv(1 - 1 / n_trials)", "Euler-Mascheroni weights swapped"),
    Mutant("dsr-variance-as-std", ST, "return math.sqrt(sharpe_variance) * (", "return sharpe_variance * (",
           "the Sharpe variance used as its standard deviation"),
    Mutant("pbo-median-not-overfit", OV, "np.mean(logits <= 0)", "np.mean(logits < 0)", "logit 0 not counted"),
    Mutant("pbo-best-out-of-sample", OV, "best = in_sample.argmax(axis=1)", "best = out_of_sample.argmax(axis=1)",
           "the best chosen out of sample"),
    Mutant("pbo-ties-lowest-rank", OV, "((out_of_sample == mine).sum(axis=1) - 1) / 2", "0",
           "out-of-sample ties ranked at their lowest"),
    Mutant("temperature-inverted", CAL, "log_softmax(z / math.exp(log_t), axis=1)",
           "log_softmax(z * math.exp(log_t), axis=1)", "the fitted T is 1 / T"),
    Mutant("metrics-brier-mirrored", K, "take_along_dim(p, target.long()[:, None], dim=1)",
           "take_along_dim(p, (2 - target.long())[:, None], dim=1)", "Brier score against the mirrored class"),
    Mutant("metrics-ece-10-bins", K, "n_bins: int = 15", "n_bins: int = 10", "ECE with 10 bins",
           ("tests/test_calibration.py",)),
    Mutant("metrics-ece-hits-inverted", K, "weights=(pred == target).double()", "weights=(pred != target).double()",
           "ECE bins count the wrong rows as hits", ("tests/test_calibration.py",)),
    # leaderboard
    Mutant("leaderboard-best-on-test", LB, 'key=lambda m: done.at[m, "val_log_loss_shared"]',
           'key=lambda m: done.at[m, "test_log_loss_shared"]', "best member chosen on test"),
    Mutant("leaderboard-tie-wins", LB, "bool(blend_test < best_test)", "bool(blend_test <= best_test)",
           "a tie counts as a win"),
    Mutant("leaderboard-own-rows", LB, 'shared.merge(df[KEYS], on=KEYS)',
           'shared.merge(df[KEYS], on=KEYS, how="outer")', "runs scored on their own rows"),
    Mutant("leaderboard-rank-on-test", LB, 'sort_values(["horizon", "val_log_loss_shared"]',
           'sort_values(["horizon", "test_log_loss_shared"]', "ranked on test"),
    Mutant("leaderboard-in-sample-flag", LB, 'df["kind"] == "blend"', 'df["kind"] != "blend"',
           "members' val marked in-sample"),
    # predictions parquet
    Mutant("datamodule-device-move-noop", DM, "panel = _to_device(panel, device)", "panel = panel",
           "data_on_device leaves the data on the host"),
    Mutant("artifacts-symbols-reversed", A, 'np.asarray(symbols, dtype=object)[parts["symbol"]]',
           'np.asarray(symbols, dtype=object)[::-1][parts["symbol"]]', "written symbol names reversed"),
    Mutant("artifacts-fwd-return-rolled", A, '"fwd_return": parts["fwd_return"].astype(np.float32)',
           '"fwd_return": np.roll(parts["fwd_return"], 1).astype(np.float32)', "fwd_return one row off"),
]

# id -> why surviving is harmless (also in docs/mutants.md)
HARMLESS: dict[str, str] = {
    "blend-start-corner": "the weighted blend's loss is convex on the simplex: any start reaches the same optimum",
}

# Loaded into each mutant's pytest: Hypothesis stops at the first failing example instead of shrinking it
# (shrinking a killed mutant's counter-example took minutes) and keeps no example database.
PLUGIN = """
from hypothesis import Phase, settings

settings.register_profile("mutants", phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None)
"""


def copy_tree(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the working tree, as they are now."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "_mutants_plugin.py").write_text(PLUGIN)


PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "_mutants_plugin", "--hypothesis-profile", "mutants",
               "--no-header"]


def preload() -> None:
    """Import the heavy third-party modules once, so each forked mutant run skips ~10 s of imports.
    Never our package: each fork must import the mutated copy."""
    os.environ["OMP_NUM_THREADS"] = "1"  # before torch: no thread pool to break across fork()
    import hypothesis  # noqa: F401
    import lightning.pytorch  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch  # noqa: F401

    assert "ensemble" not in sys.modules


def _fork_pytest(tree: Path, tests: list[str], log: Path) -> int:
    """Run pytest on ``tests`` in a forked child whose imports resolve to ``tree``; returns the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setsid()  # its own process group, so a timeout can end it and whatever it started
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(tree)
        sys.path.insert(0, str(tree))
        os.environ.update(PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
        import importlib

        import pytest

        importlib.invalidate_caches()
        code = int(pytest.main([*PYTEST_ARGS, *tests]))
        ours = sys.modules.get("ensemble")
        if ours is not None and not str(ours.__file__).startswith(str(tree)):  # the mutant must be what ran
            code = 4
    finally:
        sys.stdout.flush()
        os._exit(code)


def run_mutant(m: Mutant, tree: Path, timeout: int, fork: bool) -> tuple[str, float, str]:
    """Apply ``m`` in ``tree``, run its tests, restore. Returns (killed|survived|timeout|broken, seconds, detail).

    With ``m.old == m.new`` it runs the unmutated code: the baseline, which must survive."""
    target = tree / m.path
    original = target.read_text()
    if original.count(m.old) != 1:
        raise SystemExit(f"{m.id}: snippet occurs {original.count(m.old)} times in {m.path}; update the mutant")
    target.write_text(original.replace(m.old, m.new))
    log, tests = tree / "_mutant.log", list(m.tests or TESTS[m.path])
    start = time.perf_counter()
    if fork:
        pid = _fork_pytest(tree, tests, log)
    else:
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        with open(log, "w") as out:
            pid = subprocess.Popen([sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests], cwd=tree, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True).pid
    code = None
    try:
        while code is None and time.perf_counter() - start < timeout:
            done, status = os.waitpid(pid, os.WNOHANG)
            code = os.waitstatus_to_exitcode(status) if done else None
            time.sleep(0.2 if code is None else 0)
    finally:
        if code is None:  # interrupted or timed out: end its whole process group (it may have children)
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        target.write_text(original)
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    # 4: usage error (or the wrong package imported), 5: no tests ran; neither says anything about the mutant
    status = "timeout" if code is None else {0: "survived", 4: "broken", 5: "broken"}.get(code, "killed")
    detail = lines[0] if lines else (text.strip().splitlines() or [""])[-1]
    return status, time.perf_counter() - start, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run mutants whose id contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per mutant")
    parser.add_argument("--no-fork", action="store_true", help="a fresh interpreter per mutant (slower)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not first check that each module's tests pass on the unmutated code")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only in m.id]
    if args.list:
        for m in chosen:
            print(f"{m.id:<32} {m.path:<38} {m.what}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below when killed
    if not args.no_fork:
        preload()
    unexpected = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        start = time.perf_counter()
        for path in [] if args.skip_baseline else sorted({m.path for m in chosen}):
            # a test file that already fails would "kill" every mutant of its module
            first = Path(ROOT / path).read_text().splitlines()[0]
            status, seconds, detail = run_mutant(Mutant("baseline", path, first, first, ""), tree, args.timeout,
                                               not args.no_fork)
            print(f"[baseline] {status:<8} {seconds:5.1f}s {path}", flush=True)
            if status != "survived":
                raise SystemExit(f"the tests of {path} fail without any mutant: {detail}")
        for i, m in enumerate(chosen, 1):
            status, seconds, detail = run_mutant(m, tree, args.timeout, not args.no_fork)
            note = HARMLESS.get(m.id, "")
            if status != "killed" and not note:
                unexpected.append(m.id)
            print(f"[{i}/{len(chosen)}] {status:<8} {seconds:5.1f}s {m.id:<32} {note or detail}", flush=True)
    print(f"{len(chosen)} mutants in {time.perf_counter() - start:.0f}s; "
          f"{len(unexpected)} unexpected survivors{': ' + ', '.join(unexpected) if unexpected else ''}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
