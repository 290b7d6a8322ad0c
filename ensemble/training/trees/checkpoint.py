"""Tree checkpoints: the library's native model file plus a small JSON sidecar, never pickle.

``checkpoints/{tag}{.json|.txt|.cbm}`` holds the model; ``checkpoints/{tag}.meta.json`` holds the feature
list, horizon, windowing, rounds, best score and callback states.

A checkpoint is several files, so a kill must never pair a new model with an old sidecar: the native
files are staged under a fresh name (``last.<token>.txt``), the sidecar naming them is the commit, and only
then are they renamed into place. Whoever reads the sidecar next finishes renames a kill interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.io import atomic_write, remove_partial_writes, write_json
from ensemble.metrics.calibration import checked_temperature
from ensemble.models.checks import CheckpointMismatchError, check_checkpoint_matches
from ensemble.models.trees.base import TreeModel
from ensemble.training.runs import CheckpointError, RunNotFoundError
from ensemble.training.trust import check_import_paths

META_SUFFIX = ".meta.json"
TREE_CHECKPOINTS = {"last": f"last{META_SUFFIX}", "best": f"best{META_SUFFIX}"}
_STAGED = "staged"  # sidecar key: staged file -> final name, while the move is pending
_DIGESTS = "sha256"  # sidecar key: final name -> SHA-256 of its bytes
STAGED_NAME = re.compile(r"^(last|best)\.[0-9a-f]{8}\.")  # a staged file, not (yet) part of a checkpoint


def meta_path(ckpt_dir: Path, tag: str) -> Path:
    return ckpt_dir / f"{tag}{META_SUFFIX}"


def stage_checkpoint(model: TreeModel, ckpt_dir: Path, tag: str, copy_of: Path | None = None) -> Path:
    """Write ``model``'s native file(s) for ``tag`` under a fresh name and return the model file; ``copy_of``
    (a native file of this same model) is copied rather than serialised again. Only ``last`` keeps what a
    resume needs beyond the model. Nothing reads a staged file until ``commit_checkpoint``."""
    staged = ckpt_dir / f"{tag}.{uuid.uuid4().hex[:8]}{model.suffix}"
    if copy_of is not None:
        atomic_write(staged, lambda p: shutil.copyfile(copy_of, p))
    else:
        model.save(staged, resumable=tag == "last")
    return staged


def commit_checkpoint(model: TreeModel, staged: Path, state: dict[str, Any]) -> Path:
    """Write the sidecar of a staged checkpoint (the commit), move its files into place; the final model file."""
    tag, token = staged.name.split(".")[:2]
    moves = {p.name: p.name.replace(f".{token}", "", 1) for p in staged.parent.glob(f"{tag}.{token}.*")}
    digests = {dst: _sha256(staged.parent / src) for src, dst in moves.items()}  # a damaged file is then caught
    meta = {**model.metadata(), **state, "model_file": f"{tag}{model.suffix}", _DIGESTS: digests}
    write_json(meta_path(staged.parent, tag), {**meta, _STAGED: moves})
    _settle(meta_path(staged.parent, tag))
    write_json(meta_path(staged.parent, tag), meta)
    return staged.parent / meta["model_file"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_digests(meta: Path, state: dict[str, Any]) -> None:
    """Refuse native files whose bytes are not those the sidecar recorded (sidecars before digests: unchecked)."""
    for name, digest in state.get(_DIGESTS, {}).items():
        path = meta.with_name(_plain_name(meta, _DIGESTS, name))
        if path.is_file() and _sha256(path) != digest:
            raise CheckpointError(f"{path}: damaged tree model file, its bytes are not those its sidecar "
                                  f"{meta.name} recorded (truncated or altered)")  # fmt: skip


# what every sidecar holds; a sidecar without one of them is damaged
_REQUIRED = ("model_file", "class_path", "feature_names", "design_names", "horizon")


def _plain_name(meta: Path, key: str, name: Any) -> str:
    # a sidecar names files beside it; a path would let a damaged or hostile one move or load any file
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise CheckpointError(f"{meta}: damaged tree checkpoint sidecar, {key} is {name!r}, not a file name beside it")
    return name


def read_sidecar(meta: Path) -> dict[str, Any]:
    """A checkpoint's sidecar, checked: valid JSON, every required key, file names that stay in its folder and
    a ``class_path`` that is a registered model (``trust.py``).

    Raises:
        CheckpointError: the sidecar is unreadable, truncated or incomplete.
        UntrustedFileError: its ``class_path`` names a module that is not allowed.
    """
    try:
        state = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{meta}: damaged tree checkpoint sidecar, not readable JSON ({err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{meta}: damaged tree checkpoint sidecar, not a JSON object")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{meta}: damaged tree checkpoint sidecar, missing {', '.join(map(repr, missing))}")
    _plain_name(meta, "model_file", state["model_file"])
    staged = state.get(_STAGED, {})
    if not isinstance(staged, dict) or not isinstance(state.get(_DIGESTS, {}), dict):
        raise CheckpointError(f"{meta}: damaged tree checkpoint sidecar, {_STAGED} or {_DIGESTS} is not a mapping")
    for name in [*staged, *staged.values()]:
        _plain_name(meta, _STAGED, name)
    check_import_paths(state, str(meta))
    return state


def _settle(meta: Path) -> dict[str, Any]:
    """Finish moving a committed checkpoint's staged files into place (its writer may have been killed);
    the sidecar."""
    state = read_sidecar(meta)
    for src, dst in state.get(_STAGED, {}).items():
        with suppress(FileNotFoundError):  # already moved, by the writer or by another reader
            os.replace(meta.with_name(src), meta.with_name(dst))
    return state


@contextmanager
def native_file(path: Path) -> Iterator[None]:
    """Turn a library's error while loading a checkpoint's native model file into one line naming the file.

    Raises:
        CheckpointError: the library could not read ``path`` (truncated, damaged, another library's file).
    """
    try:
        yield
    except EnsembleError:
        raise
    except Exception as err:  # XGBoostError, LightGBMError, CatBoostError: each library has its own
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: damaged tree model file, the library cannot load it ({reason})") from err


def clean_checkpoints(ckpt_dir: Path) -> None:
    """Settle committed checkpoints, then delete what a killed writer left uncommitted or half-written."""
    for tag in ("last", "best"):
        if meta_path(ckpt_dir, tag).is_file():
            _settle(meta_path(ckpt_dir, tag))
    for path in ckpt_dir.iterdir() if ckpt_dir.is_dir() else ():
        if STAGED_NAME.match(path.name):
            path.unlink()
    remove_partial_writes(ckpt_dir)  # atomic_write's own temp files


def sidecar_of(path: Path) -> Path:
    """The sidecar (``*.meta.json``) of a tree checkpoint given by its sidecar or its model file."""
    if path.name.endswith(META_SUFFIX):
        return path
    return path.with_name(path.name[: -len(path.suffix)] + META_SUFFIX) if path.suffix else path


def read_checkpoint(path: str | Path, model: TreeModel) -> tuple[Path, dict[str, Any]]:
    """(native model file, sidecar) of a checkpoint, after checking it fits ``model`` and its data."""
    meta = sidecar_of(Path(path))
    if not meta.is_file():
        raise RunNotFoundError(f"ckpt_path: no tree checkpoint at {path} (expected its sidecar {meta.name})")
    state = _settle(meta)
    model_file = meta.with_name(state["model_file"])
    if not model_file.is_file():
        raise RunNotFoundError(f"ckpt_path: {meta} names {model_file.name}, which is missing")
    _check_digests(meta, state)
    ours = model.metadata()
    if state.get("class_path") != ours["class_path"]:
        raise CheckpointMismatchError(
            f"{model_file} holds a '{state.get('model')}' model, but the config builds '{ours['model']}'"
        )
    check_checkpoint_matches(state, ours, source=str(model_file))
    if state.get("design_names") != ours["design_names"]:
        raise CheckpointMismatchError(
            f"{model_file} was trained on seq_len={state.get('seq_len')} windows as "
            f"'{state.get('window_features')}', but the config gives seq_len={model.seq_len} as "
            f"'{model.window_features}'"
        )
    return model_file, state


def model_file(path: Path) -> Path:
    """The native model file of a checkpoint given by its sidecar or by the file itself."""
    meta = sidecar_of(path)
    if not meta.is_file():
        return path
    return meta.with_name(_settle(meta)["model_file"])


CALIBRATION = "calibration"  # sidecar key: {"temperature": T}, written after the fit (``write_temperature``)


def sidecar_temperature(state: dict[str, Any], source: str | Path) -> float:
    """The temperature a checkpoint's sidecar carries; 1.0 for one without (an older or uncalibrated run).

    Raises:
        CalibrationInputError: a temperature that is not a finite number > 0.
    """
    entry = state.get(CALIBRATION) or {}
    return checked_temperature(entry.get("temperature") if isinstance(entry, dict) else entry, str(source))


def write_temperature(path: str | Path, temperature: float | None) -> None:
    """Store ``temperature`` in the sidecar of the checkpoint at ``path`` (its sidecar or model file), or drop
    it (None). The sidecar is rewritten atomically; the native files and their digests are untouched."""
    meta = sidecar_of(Path(path))
    state = _settle(meta)
    state.pop(CALIBRATION, None)
    if temperature is not None:
        state[CALIBRATION] = {"temperature": float(temperature)}
    write_json(meta, state)
