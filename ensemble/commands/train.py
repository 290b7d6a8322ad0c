"""``ensemble fit|validate|test|predict``: pick the model's family from the config, then let it run the
subcommand with its own parser (LightningCLI for nets, jsonargparse for trees)."""

from __future__ import annotations

from typing import Any

from ensemble.training.config import config_from_flags
from ensemble.training.trading import check_trading_flags


def run(subcommand: str, argv: list[str]) -> int:
    """Run ``subcommand`` on ``argv`` (everything after it). Returns the exit status."""
    from ensemble.training.family import family_for

    if subcommand == "predict" and any(a in ("-h", "--help") for a in argv):
        from ensemble.commands.export import predict_from_parser

        print(PREDICT_HELP.format(export=predict_from_parser().format_help()), flush=True)
    check_trading_flags(argv)
    argv, threads = _pop_threads(argv)
    model = _model_sections(argv)
    argv += _apply_threads(model, threads)
    family_for(model).run_command(subcommand, argv)
    return 0


def _pop_threads(argv: list[str]) -> tuple[list[str], int | None]:
    """``argv`` without ``--threads N`` (or ``--threads=N``), and N (None when not given).

    Raises:
        ConfigError: N is not a whole number >= 1, or is missing.
    """
    from ensemble.errors import ConfigError
    from ensemble.training.threads import check_threads

    rest, value = [], None
    i = 0
    while i < len(argv):
        key, eq, inline = argv[i].partition("=")
        if key != "--threads":
            rest.append(argv[i])
            i += 1
            continue
        raw = inline if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        i += 1 if eq else 2
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"--threads must be a whole number >= 1, got {raw!r}") from None
    return rest, check_threads(value, "--threads")


def _apply_threads(model: dict[str, Any], threads: int | None) -> list[str]:
    """With ``--threads N``: set this process's torch, OpenMP and BLAS threads to N, and return flags giving a tree
    model N library threads when its config leaves ``n_jobs`` unset (idle OpenMP threads spin and fight a competing
    load, docs/scaling.md). Without it the libraries keep their defaults, which honour ``OMP_NUM_THREADS``."""
    from ensemble.training.threads import apply_threads, thread_overrides

    if threads is None:
        return []
    apply_threads(threads)
    return [arg for key, value in thread_overrides(model, threads).items() for arg in (f"--{key}", str(value))]


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
