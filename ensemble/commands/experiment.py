"""``ensemble experiment --config configs/experiments/baseline.yaml``: models x horizons, leaderboard, blends."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from ensemble.commands.parsing import launcher_flags
from ensemble.experiments.runner import Experiment, check_experiment_keys, run_experiment
from ensemble.training.config import read_yaml
from ensemble.training.runs import check_name


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="ensemble experiment", description=__doc__, exit_on_error=False)
    p.add_argument("--config", action=ActionConfigFile, help="experiment YAML")
    p.add_class_arguments(Experiment, None)  # top-level keys: name, models, horizons, ...
    return p


def run(argv: list[str]) -> int:
    """Run the experiment; exit 1 (listing them) when any cell failed, so a scheduler sees the failure."""
    argv = launcher_flags(argv)
    for i, arg in enumerate(argv):  # a config that does not load safely (a Python tag): one line naming it
        key, eq, value = arg.partition("=")
        if key == "--config" and (eq or i + 1 < len(argv)):
            path = value if eq else argv[i + 1]
            # an unknown key: one line naming it and its closest match (jsonargparse names a nested value instead)
            check_experiment_keys(read_yaml(path), path)
    cfg = parser().parse_args(argv).as_dict()
    configs = cfg.pop("config", None) or []
    if cfg.get("name"):
        check_name(cfg["name"], "name")  # it names experiments/<name>/
    cfg["configs_dir"] = _beside_yaml(cfg["configs_dir"], [Path(str(c)) for c in configs])
    rows = run_experiment(Experiment(**cfg))
    failed = [f"{r['model']}_h{r['horizon']}" for r in rows if r.get("status") == "failed" and r["kind"] == "member"]
    if failed:
        print(f"ensemble: {len(failed)} cell(s) failed: {', '.join(failed)} (see their cell.log)", file=sys.stderr)
        return 1
    return 0


def _beside_yaml(configs_dir: str, yamls: list[Path]) -> str:
    """A relative ``configs_dir`` written in an experiment YAML is relative to that file, so the bundled
    experiment runs from any working directory; one given on the command line is relative to the cwd."""
    for path in reversed(yamls):
        written = read_yaml(path).get("configs_dir")
        if written is not None:
            same = str(written) == configs_dir and not Path(configs_dir).is_absolute()
            return str(path.parent / configs_dir) if same else configs_dir
    return configs_dir
