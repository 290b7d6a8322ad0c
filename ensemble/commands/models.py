"""``ensemble models``: the registered models, their family, class and bundled config."""

from __future__ import annotations

import textwrap

from ensemble.commands.parsing import OneLineParser

LISTS = ("The models this installation can train{only} (bundled, and registered by packages through the "
         "ensemble.models entry point). name: what experiments, search spaces and run folders call it; family: "
         "neural (trained by Lightning) or tree (TreeTrainer); config: train it with ensemble fit --config CONFIG.")


def run(argv: list[str]) -> int:
    """Print one line per registered model; imports no model (the registry is a table of class paths)."""
    p = OneLineParser(
        prog="ensemble models",
        description="List the registered models: the short name that experiments, search spaces and run "
        "folders use, the family that trains it (neural: a backbone under Classifier, tree: TreeTrainer), "
        "the bundled config that trains it, and its class path.",
    )
    p.add_argument("--family", choices=("neural", "tree"), default=None, help="only this family")
    args = p.parse_args(argv)
    from ensemble.models.registry import list_models

    print(textwrap.fill(LISTS.format(only=f" of the {args.family} family" if args.family else ""), 100) + "\n")
    print(f"{'name':<14}{'family':<9}{'config':<26}class")
    for e in list_models(args.family):
        print(f"{e.name:<14}{e.family:<9}{e.config:<26}{e.class_path}")
    return 0
