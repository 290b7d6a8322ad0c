"""Start-up and tree-road cost: CPU seconds of ``ensemble`` commands against ``import torch`` and a plain script.

    python tools/bench_startup.py [--root data/demo] [--repeats 3]

Each command runs in a fresh process; its CPU time is user + system of that child (``RUSAGE_CHILDREN``),
the fastest of ``--repeats`` (a shared machine only ever adds time). Printed ratios:

- ``ensemble --help``, ``ensemble models`` and ``ensemble data summary`` against ``python -c "import torch"``
  (targets: --help <= 1.0x, models <= 1.5x);
- a LightGBM ``ensemble fit`` (150 rounds, no early stopping) against a plain pandas + lightgbm script that
  reads the same parquet splits, trains the same 150 rounds with the same parameters, predicts val and test
  and writes the predictions (target <= 1.3x).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]

PLAIN_SCRIPT = """
import sys, numpy as np, pandas as pd, lightgbm as lgb, yaml
root, params_file, out = sys.argv[1:4]
params = yaml.safe_load(open(params_file))
frames = {s: pd.read_parquet(f"{root}/{s}_scaled.parquet") for s in ("train", "val", "test")}
drop = [c for c in frames["train"] if c.startswith(("label_", "fwd_return_", "sample_weight_"))]
feats = [c for c in frames["train"].columns if c not in drop + ["datetime", "symbol"]]
train = frames["train"].dropna(subset=["label_h5"])
booster = lgb.train(params, lgb.Dataset(train[feats].to_numpy(np.float32), train["label_h5"].to_numpy() + 1),
                    num_boost_round=150)
for split in ("val", "test"):
    df = frames[split].dropna(subset=["label_h5"])
    probs = booster.predict(df[feats].to_numpy(np.float32))
    out_df = df[["datetime", "symbol", "label_h5", "fwd_return_h5"]].assign(
        prob_short=probs[:, 0], prob_flat=probs[:, 1], prob_long=probs[:, 2], prediction=probs.argmax(1) - 1)
    out_df.to_parquet(f"{out}/{split}.parquet", index=False)
"""


def cpu_seconds(cmd: list[str], cwd: Path) -> float:
    """User + system CPU seconds of one child process running ``cmd`` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best_of(cmd: list[str], cwd: Path, repeats: int) -> float:
    return min(cpu_seconds(cmd, cwd) for _ in range(repeats))


def lightgbm_params(config: dict) -> dict:
    """The bundled config's LightGBM settings as the library's own parameters (what TreeTrainer passes)."""
    init = dict(config["model"]["init_args"])
    return {"objective": "multiclass", "num_class": 3, "verbosity": -1, "seed": 0, **init}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data/demo", help="demo splits (made with `ensemble data demo` if missing)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.root).resolve()
    py, ens = sys.executable, [sys.executable, "-m", "ensemble.cli"]
    if not (root / "train_scaled.parquet").is_file():
        subprocess.run([*ens, "data", "demo", "--out", str(root)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = yaml.safe_load((ROOT / "configs" / "lightgbm.yaml").read_text())
        config["trainer"]["callbacks"] = []  # 150 rounds on both sides: no early stopping
        config["data"]["root"] = str(root)
        (work / "lgb.yaml").write_text(yaml.safe_dump(config))
        (work / "params.yaml").write_text(yaml.safe_dump(lightgbm_params(config)))
        (work / "plain.py").write_text(PLAIN_SCRIPT)
        (work / "plain").mkdir()
        rows = {
            "import torch": best_of([py, "-c", "import torch"], work, args.repeats),
            "ensemble --help": best_of([*ens, "--help"], work, args.repeats),
            "ensemble models": best_of([*ens, "models"], work, args.repeats),
            "ensemble data summary": best_of([*ens, "data", "summary", "--root", str(root), "--seq_len", "1"], work,
                                             args.repeats),
            "plain pandas+lightgbm script": best_of([py, "plain.py", str(root), "params.yaml", "plain"], work,
                                                    args.repeats),
            "ensemble fit lightgbm": best_of([*ens, "fit", "--config", "lgb.yaml", "--tracking.save_dir", "runs",
                                              "--trainer.enable_progress_bar", "false"], work, args.repeats),
        }
    torch_s, plain_s = rows["import torch"], rows["plain pandas+lightgbm script"]
    print(f"{'command':<32}{'CPU s':>8}{'ratio':>10}")
    for name, seconds in rows.items():
        base, label = (plain_s, "x plain") if name == "ensemble fit lightgbm" else (torch_s, "x torch")
        print(f"{name:<32}{seconds:>8.2f}{seconds / base:>7.2f} {label}")


if __name__ == "__main__":
    main()
