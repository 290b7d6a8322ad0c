"""Net checkpoints read safely and written atomically.

Reading: a checkpoint is loaded weights-only (no pickled code runs) and checked before Lightning sees it:
readable and complete, every ``class_path`` in it allowed (``trust.py``), and its model the one the config
builds. A damaged or hostile file is one line naming the file, never a library's traceback.

Writing: Lightning's own writer streams into the final name (through fsspec), so a full disk leaves a
truncated ``last.ckpt`` that looks complete. ``AtomicCheckpointIO`` writes a temp file in the checkpoint's
own folder and ``os.replace``s it, which is atomic on one filesystem.

Stopping: ``preempted_as_exit`` turns Lightning's SIGTERM stop into exit 143, naming the checkpoint saved.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ensemble.errors import Preempted, resume_advice
from ensemble.io import atomic_write
from ensemble.training.runs import CheckpointError
from ensemble.training.trust import check_import_paths

# net init_args linked from the data: features are checked by name elsewhere, seq_len against data.seq_len
_LINKED = ("num_features", "num_classes", "seq_len")


def read_net_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint of a ``Classifier``, loaded weights-only on the CPU, after checking it.

    Raises:
        CheckpointError: the file is truncated, damaged, not a checkpoint, holds pickled objects, or lacks
            ``state_dict``/``hyper_parameters``.
        UntrustedFileError: a ``class_path`` in it names a module that is not allowed.
    """
    path = Path(path)
    if path.suffix in (".json", ".txt", ".cbm"):  # a tree checkpoint's sidecar or native model file
        raise CheckpointError(f"{path}: a tree checkpoint, not a net's; use the config of the model that wrote it")
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused, it holds pickled Python objects, not only tensors and plain values "
            "(a weights-only load cannot read it); load checkpoints only from sources you trust"
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, ValueError... for a damaged file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or damaged ({reason})") from err
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: not a net checkpoint (no state_dict); trees' checkpoints are *.meta.json")
    if not isinstance(ckpt.get("hyper_parameters"), Mapping):
        raise CheckpointError(f"{path}: damaged checkpoint, its hyper_parameters are missing")
    check_import_paths({k: v for k, v in ckpt.items() if k != "state_dict"}, str(path))
    return dict(ckpt)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # tuples as lists, so a YAML list equals a saved tuple


def _class_name(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def check_same_model(ckpt: Mapping[str, Any], model: Mapping[str, Any], seq_len: int | None, source: str) -> None:
    """Refuse a checkpoint whose backbone class or architecture differs from the config's ``model`` section.

    Args:
        ckpt: the checkpoint (``read_net_checkpoint``).
        model: the config's ``model`` section (``class_path``, ``init_args.net``), as a dict.
        seq_len: the config's ``data.seq_len``.
        source: the checkpoint's path, for the message.

    Raises:
        CheckpointError: the first difference, naming the checkpoint, the key and both values.
    """
    saved_net = ckpt["hyper_parameters"].get("net")
    config_net = (model.get("init_args") or {}).get("net")
    if not isinstance(saved_net, Mapping) or not isinstance(config_net, Mapping):
        return  # a module built in Python: the state-dict check (check_same_weights) still applies
    saved_cls, config_cls = saved_net.get("class_path"), config_net.get("class_path")
    if _class_name(saved_cls) != _class_name(config_cls):
        raise CheckpointError(
            f"{source} holds a {_class_name(saved_cls)} model, but the config builds {_class_name(config_cls)}; "
            "use the config it was trained with"
        )
    saved, given = _plain(saved_net.get("init_args") or {}), _plain(config_net.get("init_args") or {})
    if seq_len is not None and "seq_len" in saved and saved["seq_len"] != seq_len:
        raise CheckpointError(f"{source} was trained on seq_len={saved['seq_len']} windows, but the config "
                              f"gives data.seq_len={seq_len}")  # fmt: skip
    differ = [k for k in sorted(set(saved) | set(given)) if k not in _LINKED and saved.get(k) != given.get(k)]
    if differ:
        detail = ", ".join(f"{k}={saved.get(k)!r} (config: {given.get(k)!r})" for k in differ[:4])
        raise CheckpointError(f"{source} has another {_class_name(saved_cls)} architecture than the config: {detail}")


def check_same_weights(ckpt: Mapping[str, Any], module: torch.nn.Module, source: str) -> None:
    """Refuse a checkpoint whose weights do not fit ``module``: missing or extra tensors, or other shapes.

    Raises:
        CheckpointError: naming up to three tensors.
    """
    saved = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    differ = [k for k in sorted(set(saved) | set(ours)) if saved.get(k) != ours.get(k)]
    if differ:
        detail = ", ".join(f"{k} {saved.get(k, 'missing')} (model: {ours.get(k, 'missing')})" for k in differ[:3])
        raise CheckpointError(f"{source}: its weights do not fit the configured model: {detail}")


def write_net_temperature(path: str | Path, temperature: float | None) -> None:
    """Store the calibration ``temperature`` in the net checkpoint at ``path`` (``ckpt["calibration"]``), or
    drop it (None); a checkpoint that already says so is left untouched. Written atomically.

    Raises:
        CheckpointError, UntrustedFileError: as ``read_net_checkpoint``, or the write failed.
    """
    ckpt = read_net_checkpoint(path)
    if temperature is None and "calibration" not in ckpt:
        return
    ckpt.pop("calibration", None)
    if temperature is not None:
        ckpt["calibration"] = {"temperature": float(temperature)}
    try:
        atomic_write(path, lambda tmp: _save(ckpt, tmp))
    except OSError as err:
        raise CheckpointError(f"{path}: could not store the calibration temperature ({err.strerror or err})") from err


def _save(checkpoint: dict[str, Any], tmp: Path) -> None:
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint


def _os_error(err: BaseException | None) -> OSError | None:
    # torch's zip writer reports a failed write (ENOSPC, EIO) as a RuntimeError raised while handling it
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their final name and renamed into place; a full disk keeps the old file.

    Remote paths (``s3://``...) keep Lightning's writer: object stores replace whole objects anyway.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Raises:
            CheckpointError: the write failed (e.g. no space left); the previous file under ``path`` is intact.
        """
        if "://" in str(path) or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        try:
            atomic_write(path, lambda tmp: _save(checkpoint, tmp))
        except (OSError, RuntimeError) as err:
            cause = _os_error(err)
            if cause is None:
                raise  # not the filesystem's doing: a bug keeps its traceback
            raise CheckpointError(
                f"{path}: could not write the checkpoint ({cause.strerror or cause}); the previous file is kept"
            ) from err


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """The trainer's plugins plus ``AtomicCheckpointIO``, unless the user chose a ``CheckpointIO`` already."""
    from lightning.pytorch.plugins.io import CheckpointIO

    given = [] if plugins is None else list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    return given if any(isinstance(p, CheckpointIO) for p in given) else [*given, AtomicCheckpointIO()]


@contextmanager
def preempted_as_exit() -> Iterator[None]:
    """Turn Lightning's SIGTERM stop (a ``SystemExit`` with code None, which would exit 0) into ``Preempted``
    (exit 143), naming the checkpoint saved on the way out and how to resume from it (``resume_advice``: as the
    running command says)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException as err:
        raise Preempted(f"SIGTERM received: {resume_advice(getattr(err, 'checkpoint', None))}") from err
