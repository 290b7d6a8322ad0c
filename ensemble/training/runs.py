"""Run directories: claim a fresh one atomically, find one to resume or evaluate, and where evaluations land."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.io import missing_folders, remove_empty_folders, remove_partial_writes
from ensemble.training.run_keys import RunKey, describe_run, recorded_key

_VERSION_RE = re.compile(r"^version_(\d+)$")


class RunNotFoundError(EnsembleError, FileNotFoundError):
    """No run or checkpoint where the user pointed."""


class CheckpointError(EnsembleError):
    """A checkpoint that is damaged, of another model or family, or could not be written; the message names
    the file and what is wrong with it."""


class RunNameError(EnsembleError):
    """A run name that would put the run outside its save dir."""


def run_versions(base: Path) -> list[tuple[int, Path]]:
    """``(N, base/version_N)`` of every version folder under ``base``, by N."""
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


def default_run_name(config: Mapping[str, Any]) -> str:
    """A run's name when ``tracking.name`` is not given: the model's short name and the horizon, ``lstm_h5``
    (as experiment cells are named), so runs of another horizon never share a folder of versions."""
    key = RunKey.of(config)
    return f"{key.model}_h{key.horizon}"


# claimed run folder -> the folders above it its claim created (``tracking.save_dir``, a nested ``tracking.name``)
_MADE: dict[Path, list[Path]] = {}


def claim_run_dir(base: Path) -> Path:
    """Create ``base/version_N`` with the next free N. ``mkdir`` is atomic, so two runs started
    at the same moment never share a directory."""
    made = missing_folders(base)  # ``discard_if_unused`` undoes them
    base.mkdir(parents=True, exist_ok=True)
    n = (run_versions(base)[-1][0] + 1) if run_versions(base) else 0
    while True:
        candidate = base / f"version_{n}"
        try:
            candidate.mkdir()
            _MADE[candidate] = made
            return candidate
        except FileExistsError:
            n += 1
        except FileNotFoundError:  # a failed start of another run removed the emptied ``base`` just now
            base.mkdir(parents=True, exist_ok=True)


# a tag's checkpoint file(s) in ``checkpoints/``, as glob patterns; the nets' are Lightning's
NET_CHECKPOINTS = {"last": "last.ckpt", "best": "best*.ckpt"}


def _existing_runs(base: Path, wanted: RunKey, pattern: str,
                   features_of: Callable[[Path], Sequence[str]] | None) -> list[str]:  # fmt: skip
    """Every run under ``base`` and beside it (any model), described by ``_describe_run``; this model's first."""
    beside = sorted(p for p in base.parent.iterdir() if p.is_dir() and p != base) if base.parent.is_dir() else []
    mine, others = [], []
    for family in [base, *beside]:
        for _, run in run_versions(family):
            key = recorded_key(run)
            if key is None:
                continue
            found = [f for f in (run / "checkpoints").glob(pattern) if f.is_file()]
            newest = max(found, key=lambda f: f.stat().st_mtime) if found else None
            (mine if key.model == wanted.model else others).append(describe_run(run, key, wanted, newest, features_of))
    return mine + others


def _no_match(ckpt: str, base: Path, wanted: RunKey, pattern: str,
              features_of: Callable[[Path], Sequence[str]] | None) -> RunNotFoundError:  # fmt: skip
    runs = _existing_runs(base, wanted, pattern, features_of)
    listed = "; ".join(runs[:5]) + (f"; and {len(runs) - 5} more" if len(runs) > 5 else "") if runs else "none"
    return RunNotFoundError(
        f"ckpt_path={ckpt}: no run under {base} has a '{ckpt}' checkpoint of this config ({wanted.describe()}"
        f"{', its features' if wanted.features else ''}, its model hyper-parameters); runs in {base.parent}: "
        f"{listed}; choose one with --ckpt_path <its checkpoint file>, or with the --tracking.name, --data.horizon, "
        "--data.seq_len and model options it was trained with"
    )


def find_run_checkpoint(
    ckpt: str,
    base: Path,
    patterns: Mapping[str, str] = NET_CHECKPOINTS,
    marker: Callable[[Path], Path] = lambda path: path,
    wanted: RunKey | None = None,
    features_of: Callable[[Path], Sequence[str]] | None = None,
) -> tuple[Path, Path | None]:
    """Resolve ``last``/``best`` to the newest run under ``base`` holding one whose config matches ``wanted``,
    or a path to the run folder it lies in (anywhere; None for a file outside a run).

    One lookup for every model family: ``patterns`` globs a tag's file in ``checkpoints/`` (the newest match
    wins), and ``marker`` maps a given path to the file that marks a complete checkpoint (a tree's sidecar);
    the file returned is the match or the marker. A run matches when its config.yaml has ``wanted``'s model,
    horizon and seq_len, and ``features_of`` (the checkpoint's feature names) the same features.

    Raises:
        RunNotFoundError: no such checkpoint, or no run that matches (listing the runs there are).
        CheckpointError: a file that is not a checkpoint of this family.
    """
    if ckpt in patterns:
        any_found = False
        for _, run in reversed(run_versions(base)):
            found = [f for f in (run / "checkpoints").glob(patterns[ckpt]) if f.is_file()]
            if not found:
                continue
            any_found, newest = True, max(found, key=lambda f: f.stat().st_mtime)
            if wanted is None or _matches(run, newest, wanted, features_of):
                return newest, run
        if wanted is not None and (any_found or _existing_runs(base, wanted, patterns[ckpt], features_of)):
            raise _no_match(ckpt, base, wanted, patterns[ckpt], features_of)
        raise RunNotFoundError(f"ckpt_path={ckpt}: no run under {base} has a '{ckpt}' checkpoint; train one first")
    path = marker(Path(ckpt))
    if not path.exists():
        if Path(ckpt).is_file():  # e.g. a net's last.ckpt given to a tree config
            raise CheckpointError(
                f"ckpt_path: {ckpt} is not a checkpoint of this model family (no {path.name} beside it); "
                "use the config of the model that wrote it"
            )
        raise RunNotFoundError(f"ckpt_path: checkpoint not found: {ckpt}")
    return path, checkpoint_run(path)


def _matches(run: Path, ckpt: Path, wanted: RunKey, features_of: Callable[[Path], Sequence[str]] | None) -> bool:
    key = recorded_key(run)
    if key is None or (key.model, key.horizon, key.seq_len) != (wanted.model, wanted.horizon, wanted.seq_len):
        return False
    if wanted.hyper is not None and key.hyper != wanted.hyper:
        return False  # another architecture (or tree settings): would not load, or is not this config's model
    return wanted.features is None or features_of is None or frozenset(features_of(ckpt)) == wanted.features


def checkpoint_run(path: Path) -> Path | None:
    """The run folder a checkpoint file lies in (``<run>/checkpoints/<file>``, ``<run>`` a ``version_N``),
    wherever it is; None for a file outside a run (an export's model, a copied file)."""
    run = path.parent.parent
    if path.parent.name != "checkpoints" or not _VERSION_RE.match(run.name):
        return None
    return run


def _own_run(run: Path | None, base: Path) -> Path | None:
    """``run`` when it is ``base/version_N``, the run this config writes to; else None.

    A resumed fit continues only its own run: a checkpoint of any other run (another save_dir or name, an
    export) is only read, and the resumed run claims a fresh version, so it never writes into a finished run
    that merely shares a version number.
    """
    return run if run is not None and run.parent.resolve() == base.resolve() else None


def checkpoint_to_resume(
    ckpt: str,
    base: Path,
    resuming: bool,
    patterns: Mapping[str, str] = NET_CHECKPOINTS,
    marker: Callable[[Path], Path] = lambda path: path,
    wanted: RunKey | None = None,
    features_of: Callable[[Path], Sequence[str]] | None = None,
    own: bool = True,
) -> tuple[Path, Path | None]:
    """``find_run_checkpoint``; with ``own`` the run only when it is one of ``base``'s (a fit continues only its
    own run), else the checkpoint's run wherever it is (an evaluation writes into it). When ``resuming`` a fit
    into that run, delete what its killed predecessor half-wrote there (``atomic_write`` temp files). Only the
    one process that writes the run may resume it."""
    found, run_dir = find_run_checkpoint(ckpt, base, patterns, marker, wanted, features_of)
    if own:
        run_dir = _own_run(run_dir, base)
    if resuming and run_dir is not None:
        remove_partial_writes(run_dir)
    return found, run_dir


EVAL_DIR = "eval"
EVAL_SPLITS = {"validate": "val", "test": "test", "predict": "predict"}  # subcommand -> its eval folder's prefix


def eval_split(subcommand: str, predict_split: str) -> str:
    """The eval folder's prefix of ``subcommand``: ``val``, ``test``, or for ``predict`` the split it ran on
    (``predict-val``, ``predict-test``), so predicting val and then test never overwrite each other."""
    prefix = EVAL_SPLITS[subcommand]
    return f"{prefix}-{predict_split}" if subcommand == "predict" else prefix


def eval_dir(run: Path, split: str, ckpt: str | Path) -> Path:
    """Where an evaluation of ``ckpt`` on ``split`` (val, test, predict) writes, inside the checkpoint's run:
    ``<run>/eval/<split>-<checkpoint>`` (``eval/test-best-03``, ``eval/val-last``, ``eval/predict-val-best``:
    ``eval_split``), never over the fit's own
    artifacts; a repeated evaluation of the same checkpoint and split replaces its folder once it succeeds."""
    name = Path(Path(ckpt).name.removesuffix(".meta.json")).stem  # best-03.ckpt, best.txt, best.meta.json
    return run / EVAL_DIR / f"{split}-{name}"


_STAGED_EVAL = ".partial-"


def stage_eval_dir(run: Path, split: str, ckpt: str | Path) -> Path:
    """An empty folder beside ``eval_dir`` where the evaluation writes until ``commit_eval_dir``: a failed or
    killed evaluation never replaces (or half-replaces) an earlier one of the same checkpoint and split."""
    final = eval_dir(run, split, ckpt)
    staging = final.with_name(f".{final.name}{_STAGED_EVAL}{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def commit_eval_dir(staging: Path) -> Path:
    """Move a finished evaluation's staging folder to its ``eval_dir`` name, replacing an earlier one whole."""
    final = staging.with_name(staging.name[1:].rsplit(_STAGED_EVAL, 1)[0])
    old = staging.with_name(f"{staging.name}.old")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def run_name_of(folder: Path) -> str:
    """The run name (``lstm_h5``) of a run folder or of an evaluation folder inside one, for figure titles."""
    if folder.parent.name == EVAL_DIR:  # an evaluation's folder, or its staging folder
        folder = folder.parent.parent
    return folder.parent.name


def discard_if_unused(run_dir: Path | None) -> None:
    """Delete a run folder this process claimed for a run that failed before its first checkpoint, so a
    failed start leaves no half run behind (a run with a checkpoint is kept: it can be resumed), and the emptied
    folders above it with it: its ``<name>`` folder, and any folder its claim created (a new ``tracking.save_dir``,
    the parts of a nested ``tracking.name``) that holds nothing else."""
    if run_dir is None or not run_dir.is_dir():
        return
    ckpts = run_dir / "checkpoints"
    if not (ckpts.is_dir() and any(ckpts.iterdir())):
        shutil.rmtree(run_dir)
        remove_empty_folders(_MADE.pop(run_dir, None) or [run_dir.parent])


# ``--ckpt_path`` in every family's help: what ``best`` and ``last`` resolve to (``Family.find_checkpoint``)
CKPT_PATH_HELP = (
    "a checkpoint file, or 'best' / 'last': the best (by checkpoint.monitor) or the last checkpoint of the newest "
    "run under <tracking.save_dir>/<tracking.name> whose model and its hyper-parameters (not the optimizer), "
    "horizon, seq_len and features match this config; "
    "fit resumes from it, validate/test/predict evaluate it"
)
