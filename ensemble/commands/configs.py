"""Peek at the configured model before the full parse, to pick the trainer that runs it."""

from __future__ import annotations

from pathlib import Path

import yaml

from ensemble.models.registry import list_models


def _model_class_path(argv: list[str]) -> str | None:
    class_path = None
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
        if arg.startswith("--config") or arg == "-c":
            path = Path(value)
            if path.is_file():
                model = (yaml.safe_load(path.read_text()) or {}).get("model")
                if isinstance(model, dict) and model.get("class_path"):
                    class_path = model["class_path"]
        elif arg.split("=", 1)[0] in ("--model", "--model.class_path") and not value.startswith("-"):
            class_path = value
    return class_path


def configured_model_family(argv: list[str]) -> str:
    """"tree" when the configured model class is a registered tree model, else "neural"."""
    class_path = _model_class_path(argv)
    if class_path:
        name = class_path.rsplit(".", 1)[-1]
        for entry in list_models():
            if name == entry.cls.__name__:
                return entry.family
    return "neural"
