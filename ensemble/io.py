"""Atomic file writes (a killed run never leaves a half file that looks complete), and how records name folders."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete the temp files of ``atomic_write``s that a killed process never finished, under ``run_dir``.

    Call it only where the run is resumed, by the one process that writes into it."""
    leftovers = [p for p in Path(run_dir).rglob(".*.tmp") if p.is_file()]
    for path in leftovers:
        path.unlink()
    return leftovers


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first: what a ``mkdir(parents=True)``
    of it would create, for ``remove_empty_folders`` to undo."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first, as ``missing_folders`` gives them) while they are empty; stop at the
    first that holds anything, which another run may be using.

    Raises:
        OSError: any failure other than a folder that is not empty.
    """
    for folder in folders:
        try:
            folder.rmdir()
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            return


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN/inf: an undefined number is written as null, never as a fake result
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    clean = {k: _finite_or_none(v) for k, v in data.items()}
    return atomic_write(path, lambda p: p.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n"))


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def write_figure(path: str | Path, fig: Any) -> Path:
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))


def record_path(path: str | Path, folder: str | Path, root: str | Path | None = None) -> str:
    """How a record in ``folder`` names the folder ``path``: relative to ``folder`` (``..`` steps allowed) when
    ``path`` and ``folder`` both lie inside ``root`` (default ``folder`` itself), so the record and what it names
    can move together (an experiment folder moved, or read from another working directory); else ``path`` as
    given. ``locate(recorded, folder)`` reads it back."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    root = Path(root).resolve() if root is not None else folder
    if not (path.is_relative_to(root) and folder.is_relative_to(root)):
        return str(path)
    return Path(os.path.relpath(path, folder)).as_posix()


def locate(recorded: str | Path, folder: str | Path) -> Path | None:
    """The existing folder a record in ``folder`` names, or None when it exists nowhere: an absolute path as is; a
    relative one from ``folder`` (``record_path``), else, as records written before paths were relative to their
    own folder, from the working directory, else from the nearest parent of ``folder`` under which it exists (the
    directory the recording command ran in)."""
    path = Path(recorded)
    if path.is_absolute():
        return path if path.exists() else None
    folder = Path(folder)
    if (folder / path).exists():
        return (folder / path).resolve()
    if path.exists():
        return path
    resolved = folder.resolve()
    return next((parent / path for parent in resolved.parents if (parent / path).exists()), None)
