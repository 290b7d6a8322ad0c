"""Run directories: claim a fresh one atomically, find one to resume, print a run's results."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_VERSION_RE = re.compile(r"^version_(\d+)$")


class RunNotFoundError(FileNotFoundError):
    """No run or checkpoint where the user pointed."""


def _versions(base: Path) -> list[tuple[int, Path]]:
    if not base.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in base.iterdir() if (m := _VERSION_RE.match(p.name))]
    return sorted(found)


def claim_run_dir(base: Path) -> Path:
    """Create ``base/version_N`` with the next free N. ``mkdir`` is atomic, so two runs started
    at the same moment never share a directory."""
    base.mkdir(parents=True, exist_ok=True)
    n = (_versions(base)[-1][0] + 1) if _versions(base) else 0
    while True:
        candidate = base / f"version_{n}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def find_run_checkpoint(ckpt: str, base: Path) -> tuple[Path, Path | None]:
    """Resolve ``last``/``best`` to the newest run under ``base`` holding one, or a path to its run."""
    if ckpt in ("last", "best"):
        for _, run in reversed(_versions(base)):
            ckpt_dir = run / "checkpoints"
            found = [ckpt_dir / "last.ckpt"] if ckpt == "last" else sorted(ckpt_dir.glob("best*.ckpt"))
            found = [f for f in found if f.is_file()]
            if found:
                return max(found, key=lambda f: f.stat().st_mtime), run
        raise RunNotFoundError(f"ckpt_path={ckpt}: no run under {base} has a '{ckpt}' checkpoint; train one first")
    path = Path(ckpt)
    if not path.exists():
        raise RunNotFoundError(f"ckpt_path: checkpoint not found: {path}")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return path, run_dir


def print_metrics(results: dict[str, Any], run_dir: Path, best: str) -> None:
    names = sorted({k.split("/", 1)[1] for k in results if "/" in k})
    print(f"\nrun: {run_dir}\nbest checkpoint: {best or '(last weights)'}")
    print(f"{'metric':<20}{'val':>12}{'test':>12}")
    for name in names:
        cells = [results.get(f"{stage}/{name}") for stage in ("val", "test")]
        print(f"{name:<20}" + "".join(f"{c:>12.4f}" if c is not None else f"{'-':>12}" for c in cells))
