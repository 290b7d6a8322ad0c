"""Tree checkpoints: the library's native model file plus a small JSON sidecar, never pickle.

``checkpoints/{tag}{.json|.txt|.cbm}`` holds the model; ``checkpoints/{tag}.meta.json`` holds the feature
list, horizon, windowing, rounds, best score and callback states. The sidecar is written last, so its
presence marks a complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ensemble.io import atomic_write, write_json
from ensemble.models.checks import CheckpointMismatchError, check_checkpoint_matches
from ensemble.runs import RunNotFoundError
from ensemble.trees.base import TreeModel

META_SUFFIX = ".meta.json"


def meta_path(ckpt_dir: Path, tag: str) -> Path:
    return ckpt_dir / f"{tag}{META_SUFFIX}"


def write_checkpoint(
    model: TreeModel, ckpt_dir: Path, tag: str, state: dict[str, Any], copy_of: Path | None = None
) -> Path:
    """Save ``model`` as ``tag`` and return the native file; ``copy_of`` (a native file of this same model)
    is copied rather than serialised again. Only ``last`` keeps what a resume needs beyond the model."""
    model_path = ckpt_dir / f"{tag}{model.suffix}"
    if copy_of is not None:
        atomic_write(model_path, lambda p: shutil.copyfile(copy_of, p))
    else:
        model.save(model_path, resumable=tag == "last")
    write_json(meta_path(ckpt_dir, tag), {**model.metadata(), **state, "model_file": model_path.name})
    return model_path


def _meta_for(path: Path) -> Path:
    if path.name.endswith(META_SUFFIX):
        return path
    return path.with_name(path.name[: -len(path.suffix)] + META_SUFFIX) if path.suffix else path


def read_checkpoint(path: str | Path, model: TreeModel) -> tuple[Path, dict[str, Any]]:
    """(native model file, sidecar) of a checkpoint, after checking it fits ``model`` and its data."""
    meta = _meta_for(Path(path))
    if not meta.is_file():
        raise RunNotFoundError(f"ckpt_path: no tree checkpoint at {path} (expected its sidecar {meta.name})")
    state = json.loads(meta.read_text())
    model_file = meta.with_name(state["model_file"])
    if not model_file.is_file():
        raise RunNotFoundError(f"ckpt_path: {meta} names {model_file.name}, which is missing")
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


def find_checkpoint(ckpt: str, base: Path) -> tuple[Path, Path | None]:
    """Resolve ``last``/``best`` to the newest run under ``base`` holding one, or a path to its run dir."""
    if ckpt in ("last", "best"):  # the newest run first, as for nets
        runs = [p for p in base.glob("version_*") if p.name[8:].isdigit()] if base.is_dir() else []
        for run in sorted(runs, key=lambda p: int(p.name[8:]), reverse=True):
            if meta_path(run / "checkpoints", ckpt).is_file():
                return meta_path(run / "checkpoints", ckpt), run
        raise RunNotFoundError(f"ckpt_path={ckpt}: no run under {base} has a '{ckpt}' checkpoint; train one first")
    path = Path(ckpt)
    if not _meta_for(path).is_file():
        raise RunNotFoundError(f"ckpt_path: checkpoint not found: {path}")
    return path, path.parent.parent if path.parent.name == "checkpoints" else None


def model_file(path: Path) -> Path:
    """The native model file of a checkpoint given by its sidecar or by the file itself."""
    meta = _meta_for(path)
    return meta.with_name(json.loads(meta.read_text())["model_file"]) if meta.is_file() else path
