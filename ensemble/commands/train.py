"""``ensemble fit|validate|test|predict``: pick the model's family from the config, then let it run the
subcommand with its own parser (LightningCLI for nets, jsonargparse for trees)."""

from __future__ import annotations

from typing import Any

from ensemble.training.config import config_from_flags
from ensemble.training.trading import check_moved_flags


def run(subcommand: str, argv: list[str]) -> int:
    """Run ``subcommand`` on ``argv`` (everything after it). Returns the exit status."""
    from ensemble.training.family import family_for

    if subcommand == "predict" and any(a in ("-h", "--help") for a in argv):
        from ensemble.commands.export import predict_from_parser

        print(PREDICT_HELP.format(export=predict_from_parser().format_help()), flush=True)
    check_moved_flags(argv)
    family_for(_model_sections(argv)).run_command(subcommand, argv)
    return 0


# ``ensemble predict --help``: both ways to predict, the export's options first (they are parsed elsewhere)
PREDICT_HELP = """ensemble predict has two forms.

1. From an export folder or a registered model (no config, no checkpoint):

{export}
2. From a checkpoint of a run, with its config: ensemble predict --config CONFIG --ckpt_path CKPT [options below]
"""


def _model_sections(argv: list[str]) -> dict[str, Any]:
    """The ``--config`` files and ``--model*`` flags of ``argv``: all that decides the family."""
    picked: list[str] = []
    for i, arg in enumerate(argv):
        key = arg.split("=", 1)[0]
        if key in ("--config", "-c") or key.startswith("--model"):
            picked += [arg] if "=" in arg or i + 1 == len(argv) else [arg, argv[i + 1]]
    return config_from_flags(picked)
