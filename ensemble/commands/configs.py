"""Peek at the configured model before the full parse, to pick the trainer that runs it."""

from __future__ import annotations

from pathlib import Path

import yaml

from ensemble.models.registry import list_models


def _class_paths(argv: list[str]) -> tuple[str | None, str | None]:
    """(model class path, backbone class path) from --config files and overrides, last one wins."""
    model_cp = net_cp = None
    for i, arg in enumerate(argv):
        key = arg.split("=", 1)[0]
        value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
        if key in ("--config", "-c"):
            path = Path(value)
            model = (yaml.safe_load(path.read_text()) or {}).get("model") if path.is_file() else None
            if isinstance(model, dict):
                model_cp = model.get("class_path", model_cp)
                net = (model.get("init_args") or {}).get("net")
                net_cp = net.get("class_path", net_cp) if isinstance(net, dict) else net_cp
        elif key in ("--model", "--model.class_path") and not value.startswith("-"):
            model_cp = value
        elif key in ("--model.init_args.net", "--model.init_args.net.class_path", "--model.net"):
            net_cp = value
    return model_cp, net_cp


def _entry_for(class_path: str | None):
    if class_path:
        name = class_path.rsplit(".", 1)[-1]
        for entry in list_models():
            if name == entry.cls.__name__:
                return entry
    return None


def configured_short_name(argv: list[str]) -> str:
    """Registry name of the configured backbone or model (``lstm``, ``xgboost``, ...)."""
    model_cp, net_cp = _class_paths(argv)
    entry = _entry_for(net_cp) or _entry_for(model_cp)
    if entry is not None:
        return entry.name
    return (net_cp or model_cp or "model").rsplit(".", 1)[-1].lower()


def configured_model_family(argv: list[str]) -> str:
    """"tree" when the configured model class is a registered tree model, else "neural"."""
    entry = _entry_for(_class_paths(argv)[0])
    return entry.family if entry is not None else "neural"
