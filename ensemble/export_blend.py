"""Exports of blends and of experiment candidates, and predicting with any export (a blend's included).

A blend's export holds ``members/<i>/`` (member i's own export, in ``blend.json``'s member order),
``blend.json`` (method, fitted ``state``, the member folders, horizon, ``fit_on``), the blend run's ``config.yaml``
and ``metrics.json``, and ``metadata.json`` with family ``blend``. Only the members the fitted blend reads are
exported (``ensembling.used``: a member of weight 0 is left out, and listed under ``unused_members``), and
``blend.json``'s members and state are those: a zero-weight member costs no run and no warm-up rows. Predicting
with it runs those members on the input and combines their probabilities with the fitted blend
(``ensembling.methods.from_state``) on the rows all of them predicted: a member with a longer window predicts
fewer rows, and the rows it leaves out are reported as warm-up of the longest window.

A candidate folder may be a walk-forward folder (``walkforward.json``): what it exports is its final model,
the newest finished ``runs/final/version_N`` (trained on the train split as ``ensemble fit`` trains).
"""

from __future__ import annotations

import json
import re
import shutil
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.data.contract import DataContractError
from ensemble.ensembling.methods import from_state
from ensemble.ensembling.used import restrict, used_members
from ensemble.errors import ConfigError
from ensemble.experiments.cells import finished_runs
from ensemble.export import Predicted, build_export, export_run, predict_rows
from ensemble.io import locate, write_json
from ensemble.training.family import ExportError
from ensemble.walkforward.runner import RECORD as WALKFORWARD_RECORD

BLEND_KEYS = ("method", "members", "horizon", "state")


def exportable_run(folder: Path) -> Path:
    """The run folder that holds ``folder``'s model: ``folder`` itself for a run, and for a walk-forward folder
    (it has ``walkforward.json``) its final model, the newest finished ``runs/final/version_N``.

    Raises:
        ExportError: a walk-forward folder without a finished final model.
    """
    folder = Path(folder)
    if not (folder / WALKFORWARD_RECORD).is_file():
        return folder
    done = finished_runs(folder / "runs" / "final")  # oldest first, by version number
    if not done:
        raise ExportError(f"{folder}: a walk-forward without a finished final model (runs/final/version_N with "
                          f"test metrics); run its walk-forward to the end first")  # fmt: skip
    return done[-1][0]


def read_blend(folder: Path) -> dict[str, Any]:
    """``folder/blend.json`` with the keys an export needs, checked.

    Raises:
        ExportError: unreadable, or missing ``method``, ``members``, ``horizon`` or ``state`` (a blend written
            before blends recorded their fitted state: blend its runs again).
    """
    path = Path(folder) / "blend.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: not a readable blend record ({err})") from err
    missing = [k for k in BLEND_KEYS if not isinstance(record, dict) or k not in record]
    if missing:
        why = "; blend its runs again to record the fitted blend" if missing == ["state"] else ""
        raise ExportError(f"{path}: the blend record lacks {', '.join(map(repr, missing))}{why}")
    if not isinstance(record["members"], list) or not record["members"]:
        raise ExportError(f"{path}: 'members' must be a non-empty list of run folders")
    return record


def export_blend(run_dir: Path, out: Path) -> Path:
    """Export a blend run: the export of every member the fitted blend reads (``used_members``; a member may be a
    run, a walk-forward folder or a blend) under ``members/<i>/``, the fitted blend over those members, and the
    blend run's config and metrics (``build_export``).

    Raises:
        ExportError: a damaged blend record, a member folder that is gone, a member that cannot be exported.
    """
    run_dir = Path(run_dir)
    record = read_blend(run_dir)
    for key in ("config.yaml", "metrics.json"):
        if not (run_dir / key).is_file():
            raise ExportError(f"{run_dir}: not a finished blend run (missing {key})")
    used = _used(record, run_dir / "blend.json")
    members = []
    for i in used:
        recorded = record["members"][i]
        found = locate(str(recorded), run_dir)
        if found is None:
            raise ExportError(f"{run_dir}/blend.json: member {i} ({recorded}) is missing; it must stay where it was "
                              f"blended, or move with the blend in its experiment folder")  # fmt: skip
        members.append(found)
    unused = [{"index": i, "run_dir": str(m)} for i, m in enumerate(record["members"]) if i not in used]

    def fill(staging: Path) -> None:
        metas = []
        for i, member in enumerate(members):
            export_model(member, staging / "members" / str(i))
            metas.append(json.loads((staging / "members" / str(i) / "metadata.json").read_text()))
        shutil.copy2(run_dir / "config.yaml", staging / "config.yaml")
        shutil.copy2(run_dir / "metrics.json", staging / "metrics.json")
        write_json(staging / "blend.json", {**{k: record[k] for k in (*BLEND_KEYS, "fit_on") if k in record},
                                            "members": [str(m) for m in members],
                                            "state": restrict(record["state"], used), "unused_members": unused})
        features = list(dict.fromkeys(f for m in metas for f in m.get("feature_names", [])))
        write_json(staging / "metadata.json", {
            "family": "blend", "method": record["method"], "fit_on": record.get("fit_on", "val"),
            "members": [m["family"] for m in metas], "feature_names": features, "horizon": int(record["horizon"]),
            "seq_len": max(int(m["seq_len"]) for m in metas), "source_run": str(run_dir),
        })  # fmt: skip

    return build_export(out, fill)


def _used(record: dict[str, Any], path: Path) -> list[int]:
    """``used_members`` of a blend record; a damaged state is an ExportError naming ``path``."""
    try:
        return used_members(record["state"], len(record["members"]))
    except ConfigError as err:
        raise ExportError(f"{path}: {err}") from err


def export_model(folder: Path, out: Path) -> Path:
    """Export whatever ``folder`` holds: a blend run (``blend.json``), a walk-forward folder (its final model,
    ``exportable_run``) or a finished run.

    Raises:
        ExportError: nothing exportable there, or ``out`` holds something other than an export.
    """
    folder = Path(folder)
    if (folder / "blend.json").is_file():
        return export_blend(folder, out)
    return export_run(exportable_run(folder), out)


def _metadata(export: Path) -> dict[str, Any]:
    path = export / "metadata.json"
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: damaged export metadata, not readable JSON ({err})") from err


def predict_any(export: Path, data: Path) -> Predicted:
    """Predict ``data`` with an export folder of one model (``export.predict_rows``) or of a blend: every member the
    fitted blend reads predicts (``used_members``: none of weight 0, also in an export that holds them), and the
    fitted blend combines their probabilities on the rows all of them predicted.

    The members' probabilities pass through float32 as in a run's predictions files, so a blend export predicts
    what its run's ``predictions/<split>.parquet`` holds.

    Raises:
        DataContractError: the file does not fit a member, or no row has the history every member needs.
        ExportError: a damaged export.
    """
    export = Path(export)
    if _metadata(export).get("family") != "blend":
        return predict_rows(export, data)
    record = read_blend(export)
    used = _used(record, export / "blend.json")  # an export written before unused members were left out
    try:
        blend = from_state(restrict(record["state"], used))
    except ConfigError as err:
        raise ExportError(f"{export / 'blend.json'}: {err}") from err
    parts = []
    for i in used:
        member = export / "members" / str(i)
        if not (member / "metadata.json").is_file():
            raise ExportError(f"{export}: member {i} is missing (no members/{i}/metadata.json); export the blend again")
        parts.append(predict_any(member, data))
    common = reduce(np.intersect1d, [p.ends for p in parts])  # every member read the same file in the same order
    seq_len = max(p.seq_len for p in parts)
    if common.size == 0:
        raise DataContractError(f"{data}: no row was predicted by every member of the blend (its longest window "
                                f"needs {seq_len - 1} earlier rows of a symbol)")  # fmt: skip
    probs = np.stack([p.probs[np.searchsorted(p.ends, common)].astype(np.float32) for p in parts])
    return Predicted(parts[0].panel, common, blend.predict_proba(probs.astype(np.float64)), seq_len)


def champion_folder(experiment: Path, horizon: int) -> tuple[Path, dict[str, Any]]:
    """The candidate folder an experiment chose as champion for ``horizon`` (``champion_h<H>.json``) and the record.

    Raises:
        ExportError: no such experiment folder; no champion record for that horizon (naming the horizons that
            have one); a damaged record; or a champion folder that is gone.
    """
    experiment = Path(experiment)
    if not experiment.is_dir():
        raise ExportError(f"no experiment at {experiment}; give its name (--experiment) and the folder experiments "
                          f"live in (--experiments_dir)")  # fmt: skip
    path = experiment / f"champion_h{horizon}.json"
    if not path.is_file():
        found = (re.fullmatch(r"champion_h(\d+)\.json", p.name) for p in experiment.glob("champion_h*.json"))
        have = sorted(int(m.group(1)) for m in found if m)
        which = (f"it has one for horizon(s) {', '.join(map(str, have))}" if have
                 else "it has none: ensemble experiment chooses champions only for walk-forward experiments "
                      "(ones with a walkforward: section)")  # fmt: skip
        raise ExportError(f"{experiment}: no champion record for horizon {horizon} ({path.name}); {which}")
    try:
        record = json.loads(path.read_text())
        champion = record["champion"]
        recorded = str(champion["run_dir"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ExportError(f"{path}: damaged champion record ({type(err).__name__}: {err})") from err
    folder = locate(recorded, experiment)
    if folder is None:
        raise ExportError(f"{path}: the champion {champion.get('name', '?')}'s folder {recorded} is missing; "
                          f"run the experiment again")  # fmt: skip
    return folder, record
