"""Run directories: claim a fresh one atomically, find one to resume, print a run's results."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.io import remove_partial_writes

_VERSION_RE = re.compile(r"^version_(\d+)$")


class RunNotFoundError(EnsembleError, FileNotFoundError):
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


# a tag's checkpoint file(s) in ``checkpoints/``, as glob patterns; the nets' are Lightning's
NET_CHECKPOINTS = {"last": "last.ckpt", "best": "best*.ckpt"}


def find_run_checkpoint(
    ckpt: str,
    base: Path,
    patterns: Mapping[str, str] = NET_CHECKPOINTS,
    marker: Callable[[Path], Path] = lambda path: path,
) -> tuple[Path, Path | None]:
    """Resolve ``last``/``best`` to the newest run under ``base`` holding one, or a path to its run.

    One lookup for every model family: ``patterns`` globs a tag's file in ``checkpoints/`` (the newest match
    wins), and ``marker`` maps a given path to the file that marks a complete checkpoint (a tree's sidecar);
    the file returned is the match or the marker.
    """
    if ckpt in patterns:
        for _, run in reversed(_versions(base)):
            found = [f for f in (run / "checkpoints").glob(patterns[ckpt]) if f.is_file()]
            if found:
                return max(found, key=lambda f: f.stat().st_mtime), run
        raise RunNotFoundError(f"ckpt_path={ckpt}: no run under {base} has a '{ckpt}' checkpoint; train one first")
    path = marker(Path(ckpt))
    if not path.exists():
        raise RunNotFoundError(f"ckpt_path: checkpoint not found: {ckpt}")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return path, run_dir


def checkpoint_to_resume(
    ckpt: str,
    base: Path,
    resuming: bool,
    patterns: Mapping[str, str] = NET_CHECKPOINTS,
    marker: Callable[[Path], Path] = lambda path: path,
) -> tuple[Path, Path | None]:
    """``find_run_checkpoint``, and when ``resuming`` a fit into that run, delete what its killed predecessor
    half-wrote there (``atomic_write`` temp files). Only the one process that writes the run may resume it."""
    found, run_dir = find_run_checkpoint(ckpt, base, patterns, marker)
    if resuming and run_dir is not None:
        remove_partial_writes(run_dir)
    return found, run_dir


def discard_if_unused(run_dir: Path | None) -> None:
    """Delete a run folder this process claimed for a run that failed before its first checkpoint, so a
    failed start leaves no half run behind (a run with a checkpoint is kept: it can be resumed)."""
    if run_dir is None or not run_dir.is_dir():
        return
    ckpts = run_dir / "checkpoints"
    if not (ckpts.is_dir() and any(ckpts.iterdir())):
        shutil.rmtree(run_dir)


def print_metrics(results: dict[str, Any], run_dir: Path, best: str) -> None:
    names = sorted({k.split("/", 1)[1] for k in results if "/" in k})
    print(f"\nrun: {run_dir}\nbest checkpoint: {best or '(last weights)'}")
    print(f"{'metric':<20}{'val':>12}{'test':>12}")
    for name in names:
        cells = [results.get(f"{stage}/{name}") for stage in ("val", "test")]
        print(f"{name:<20}" + "".join(f"{c:>12.4f}" if c is not None else f"{'-':>12}" for c in cells))
