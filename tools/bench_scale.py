"""Time and peak RSS of load, windowing, an LSTM epoch and a LightGBM fit, at several data sizes.

Each (root, stage) runs in a fresh child process, so each peak RSS is its own: the parent reads it with
``os.wait4`` (it survives an out-of-memory kill). ``base`` is the child's RSS after its imports and
``extra = peak - base`` is what the stage costs; ``f32`` is the size of the float32 feature matrices loaded.

- load: ``WindowDataModule.setup`` of all three splits (what a whole ``ensemble fit`` holds at its end).
- window: train + val loaded, then one full pass over the train windows through ``WindowLoader``.
- lstm: ``configs/lstm.yaml`` built by ``ensemble.training.family.build`` and trained (``job.train``) with max_epochs 1
  (the train epoch and its val pass; the data is loaded first and not timed).
- lightgbm: ``configs/lightgbm.yaml`` through ``TreeCLI`` and ``TreeTrainer.fit`` (design matrix, the
  library's Dataset, up to 150 rounds with early stopping, a val evaluation per 10 rounds).

Roots after the first are compared with the first, in the same run: time and extra-RSS ratios against
the ideal, the ratio of train rows. ``seconds`` is wall time, ``cpu s`` the process's CPU time (all
threads) and ``loadavg`` the 1-minute load average as the stage ended: on a shared machine, a load
above the core count means the time is inflated (spinning OpenMP threads suffer most).

    ensemble data demo --out data/demo_x10 --size 10      # and --size 100 for data/demo_x100
    python tools/bench_scale.py --roots data/demo data/demo_x10
    python tools/bench_scale.py --roots data/demo_x100 --load-only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIGS = Path(__file__).parents[1] / "configs"
STAGES = ("load", "window", "lstm", "lightgbm")
SEQ_LEN, BATCH = 30, 512  # configs/lstm.yaml's data settings
GIB = 2**30


def rss_mib() -> float:
    """Current resident set size of this process (``ru_maxrss`` only gives the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sampler(stage: str, every: float = 10.0) -> None:
    """Print the RSS every ``every`` seconds: progress, and how far a stage got if it is killed."""
    start = time.perf_counter()

    def loop() -> None:
        while True:
            time.sleep(every)
            print(f"  [{stage} {time.perf_counter() - start:6.0f} s] rss {rss_mib() / 1024:6.2f} GiB  "
                  f"peak {peak_mib() / 1024:6.2f} GiB", file=sys.stderr, flush=True)  # fmt: skip

    threading.Thread(target=loop, daemon=True).start()


def child(stage: str, root: str, out: Path) -> None:
    """Run one stage in this (fresh) process and write its numbers as JSON to ``out``."""
    import torch  # noqa: F401  (in every baseline: interpreter, torch, Lightning, pyarrow)
    from tqdm import tqdm

    from ensemble.data import WindowDataModule

    workdir = tempfile.mkdtemp(prefix="bench_scale-")
    args = {"data.root": root, "tracking.save_dir": workdir, "trainer.enable_model_summary": False}
    if stage in ("lstm", "lightgbm"):
        from ensemble.training.family import build

        extra = {"trainer.max_epochs": 1, "trainer.accelerator": "cpu"} if stage == "lstm" else {}
        job = build(CONFIGS / f"{stage}.yaml", {**args, **extra})
        dm, fit = job.datamodule, job.train
    else:
        dm = WindowDataModule(root=root, seq_len=SEQ_LEN, batch_size=BATCH)
    base = peak_mib()
    sampler(stage)
    start, cpu = time.perf_counter(), time.process_time()
    for split_stage in ("fit", "test") if stage == "load" else ("fit",):
        dm.setup(split_stage)
    result = {"base_mib": base, "f32_mib": sum(p.features.numel() * 4 for p in dm.panels.values()) / 2**20}
    if stage != "load":
        start, cpu = time.perf_counter(), time.process_time()
    if stage == "window":
        for _ in tqdm(dm.train_dataloader(), desc="train windows", unit="batch", mininterval=5):
            pass
    elif stage in ("lstm", "lightgbm"):
        fit()
    result.update(seconds=time.perf_counter() - start, cpu_s=time.process_time() - cpu, loadavg=os.getloadavg()[0])
    out.write_text(json.dumps({**result, "peak_mib": peak_mib()}))
    shutil.rmtree(workdir, ignore_errors=True)


def run_child(stage: str, root: str) -> dict:
    """One stage in a fresh process; its peak RSS from ``wait4``, even when it was killed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        print(f"\n== {root}: {stage}", flush=True)
        proc = subprocess.Popen([sys.executable, __file__, "--child", stage, "--roots", root, "--out", str(out)])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        result = json.loads(out.read_text()) if out.exists() else {"failed": proc.returncode}
    return {**result, "stage": stage, "root": root, "peak_mib": usage.ru_maxrss / 1024}


def describe(root: str) -> dict:
    """Rows and the float32 feature-matrix size from the parquet metadata, before loading anything."""
    import pyarrow.parquet as pq

    from ensemble.data import WindowDataModule

    dm = WindowDataModule(root=root)
    rows = {s: pq.ParquetFile(dm.path(s)).metadata.num_rows for s in ("train", "val", "test")}
    return {"rows": rows, "features": dm.num_features, "f32_gib": sum(rows.values()) * dm.num_features * 4 / GIB}


def mem_available_gib() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 2**20


def print_tables(results: list[dict], roots: list[str], infos: dict[str, dict]) -> None:
    cols = ("data", "train rows", "stage", "seconds", "cpu s", "loadavg", "base MiB", "peak MiB", "extra MiB",
            "f32 MiB", "extra/f32")  # fmt: skip
    print(f"\n| {' | '.join(cols)} |\n|---|---:|---|" + "---:|" * (len(cols) - 3))
    for r in results:
        rows = infos[r["root"]]["rows"]["train"]
        if "failed" in r:
            print(f"| {r['root']} | {rows:,} | {r['stage']} | exit {r['failed']} | | | | {r['peak_mib']:,.0f} | | | |")
            continue
        extra = r["peak_mib"] - r["base_mib"]
        print(f"| {r['root']} | {rows:,} | {r['stage']} | {r['seconds']:,.1f} | {r['cpu_s']:,.1f} | {r['loadavg']:.1f} "
              f"| {r['base_mib']:,.0f} | {r['peak_mib']:,.0f} | {extra:,.0f} | {r['f32_mib']:,.0f} "
              f"| {extra / r['f32_mib']:.2f} |")  # fmt: skip
    ref = {r["stage"]: r for r in results if r["i"] == 0 and "failed" not in r}
    for i, root in enumerate(roots[1:], 1):
        ideal = infos[root]["rows"]["train"] / infos[roots[0]]["rows"]["train"]
        print(f"\n{root} / {roots[0]} (same run; ideal = train rows ratio = {ideal:.1f})\n")
        print("| stage | time ratio | cpu ratio | extra RSS ratio | ideal |\n|---|---:|---:|---:|---:|")
        for r in results:
            if r["i"] != i or "failed" in r or r["stage"] not in ref:
                continue
            a = ref[r["stage"]]
            extra = (r["peak_mib"] - r["base_mib"]) / (a["peak_mib"] - a["base_mib"])
            print(f"| {r['stage']} | {r['seconds'] / a['seconds']:.2f} | {r['cpu_s'] / a['cpu_s']:.2f} | {extra:.2f} "
                  f"| {ideal:.1f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roots", nargs="+", default=["data/demo", "data/demo_x10"])
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--load-only", action="store_true", help="only the loading path's peak memory (for 100x)")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.roots[0], args.out)
        return
    stages = ["load"] if args.load_only else args.stages
    infos = {root: describe(root) for root in args.roots}
    print(f"{os.cpu_count()} CPUs, {mem_available_gib():.1f} GiB available now")
    for root, info in infos.items():
        print(
            f"{root}: rows {info['rows']} x {info['features']} features; "
            f"float32 feature matrices {info['f32_gib']:.2f} GiB"
        )
    results = [{**run_child(stage, root), "i": i} for i, root in enumerate(args.roots) for stage in stages]
    print_tables(results, args.roots, infos)


if __name__ == "__main__":
    main()
