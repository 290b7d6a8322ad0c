"""``ensemble models``: the registered models, their family, class and bundled config."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models (short names for configs and experiments)")
    p.add_argument("--family", choices=("neural", "tree"), default=None)


def run(args: argparse.Namespace) -> int:
    import ensemble.models  # noqa: F401  (explicit imports register the bundled models)
    from ensemble.models.registry import list_models

    entries = list_models(args.family)
    print(f"{'name':<14}{'family':<9}{'config':<26}class")
    for e in entries:
        print(f"{e.name:<14}{e.family:<9}{e.config:<26}{e.class_path}")
    return 0
