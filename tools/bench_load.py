"""Time and peak memory to load and window the splits, against the size of their feature matrices.

Each size runs in a fresh child process, so its peak RSS is its own. The bound from the issue:
peak RSS - interpreter/torch baseline < 2x the float32 feature matrices.

    python tools/bench_load.py --roots data/demo data/demo_x10 [--seq_len 60]
    (make the 10x data first: ensemble data demo --out data/demo_x10 --size 10)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(root: str, seq_len: int) -> dict[str, float]:
    import pyarrow.parquet  # noqa: F401  (the baseline: interpreter, torch, Lightning, pyarrow)
    import torch

    from ensemble.data import WindowDataModule

    baseline = _rss_mib()
    start = time.perf_counter()
    dm = WindowDataModule(root=root, seq_len=seq_len, batch_size=512)
    dm.setup("fit")
    dm.setup("test")
    load_s = time.perf_counter() - start
    load_peak = _rss_mib()
    feature_mib = sum(p.features.numel() * 4 for p in dm.panels.values()) / 2**20
    rows = sum(len(p) for p in dm.panels.values())
    start = time.perf_counter()
    n = 0
    for batch in dm.train_dataloader():  # one full epoch of windows, gathered
        n += batch["x"].shape[0]
    epoch_s = time.perf_counter() - start
    del torch
    return {"root": root, "rows": rows, "features_mib": feature_mib,
            "baseline_mib": baseline,
            "load_peak_mib": load_peak, "peak_mib": _rss_mib(), "load_s": load_s,
            "window_epoch_s": epoch_s, "windows": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roots", nargs="+", default=["data/demo"])
    ap.add_argument("--seq_len", type=int, default=60)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.seq_len)))
        return
    print(f"{'root':<18}{'rows':>11}{'feat MiB':>10}{'base MiB':>10}{'load peak':>10}{'extra/feat':>11}"
          f"{'epoch peak':>11}{'load s':>8}{'epoch s':>9}")
    for root in args.roots:
        out = subprocess.run([sys.executable, __file__, "--child", root, "--seq_len", str(args.seq_len)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        extra = (r["load_peak_mib"] - r["baseline_mib"]) / r["features_mib"]
        print(f"{root:<18}{r['rows']:>11,}{r['features_mib']:>10.0f}{r['baseline_mib']:>10.0f}"
              f"{r['load_peak_mib']:>10.0f}{extra:>10.2f}x{r['peak_mib']:>11.0f}{r['load_s']:>8.1f}"
              f"{r['window_epoch_s']:>9.1f}")


if __name__ == "__main__":
    main()
