"""Run directories: claim a fresh one atomically, find one to resume, print a run's results."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from ensemble.errors import EnsembleError
from ensemble.io import remove_partial_writes

_VERSION_RE = re.compile(r"^version_(\d+)$")


class RunNotFoundError(EnsembleError, FileNotFoundError):
    """No run or checkpoint where the user pointed."""


class CheckpointError(EnsembleError):
    """A checkpoint that is damaged, of another model or family, or could not be written; the message names
    the file and what is wrong with it."""


class RunNameError(EnsembleError):
    """A run name that would put the run outside its save dir."""


def _versions(base: Path) -> list[tuple[int, Path]]:
    if not base.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in base.iterdir() if (m := _VERSION_RE.match(p.name))]
    return sorted(found)


def check_name(name: str, key: str = "tracking.name") -> str:
    """``name`` if it is a relative name that stays inside the folder it is joined to; the one rule for every
    user-given name that becomes a path (run names, study and experiment names).

    A name is one or more plain folder names joined by ``/``: ``lstm``, or the layer's own nested names such as
    ``<study>/trial_3``. Absolute names, ``..`` and ``.`` parts, empty parts, backslashes and NUL are refused,
    so a name can never leave its parent folder.

    Raises:
        RunNameError: naming ``key`` and the value.
    """
    text = str(name)
    parts = text.split("/")
    if not text or text.startswith("/") or "\\" in text or "\0" in text or any(p in ("", ".", "..") for p in parts):
        raise RunNameError(
            f"{key} '{text}' is not a name: use plain folder names joined by '/', with no '..', no leading '/' "
            "and no backslash (it must stay inside its folder)"
        )
    return text


def run_base(save_dir: str | Path, name: str) -> Path:
    """``save_dir/name``, the folder that holds a run family's ``version_N`` folders; the one place a run's
    name becomes a path.

    Raises:
        RunNameError: ``name`` would leave ``save_dir`` (see ``check_name``).
    """
    return Path(save_dir) / check_name(name)


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
        if Path(ckpt).is_file():  # e.g. a net's last.ckpt given to a tree config
            raise CheckpointError(
                f"ckpt_path: {ckpt} is not a checkpoint of this model family (no {path.name} beside it); "
                "use the config of the model that wrote it"
            )
        raise RunNotFoundError(f"ckpt_path: checkpoint not found: {ckpt}")
    return path, _own_run(path, base)


def _own_run(path: Path, base: Path) -> Path | None:
    """The run folder of a checkpoint file when that run is ``base/version_N``: the run this config writes to.

    A checkpoint of any other run (another save_dir or name, an export) is only read: the resumed or evaluated
    run claims a fresh version, so it never writes into a finished run that merely shares a version number.
    """
    run = path.parent.parent
    if path.parent.name != "checkpoints" or not _VERSION_RE.match(run.name):
        return None
    return run if run.parent.resolve() == base.resolve() else None


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


# ``--ckpt_path`` in every family's help: what ``best`` and ``last`` resolve to (``Family.find_checkpoint``)
CKPT_PATH_HELP = (
    "a checkpoint file, or 'best' / 'last': the best (by checkpoint.monitor) or the last checkpoint of the newest "
    "run under <tracking.save_dir>/<tracking.name> whose model, horizon, seq_len and features match this config; "
    "fit resumes from it, validate/test/predict evaluate it"
)
