"""Run configs as Python objects: a YAML file (or a dict) plus dotted overrides, resolved to one dict.

This is how tuning, experiments, walk-forward and export describe a run to the training layer; only the
CLI turns argv into configs. A dotted key names a nested entry: ``model.init_args.net.init_args.hidden_size``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ensemble.errors import ConfigError
from ensemble.metrics.arrays import suite_metric_names
from ensemble.metrics.suite import metric_mode
from ensemble.models.registry import ModelEntry, entry_for

ConfigSource = str | Path | Mapping[str, Any]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping read with ``safe_load`` (no Python tags run).

    Raises:
        ConfigError: the file is missing, unreadable, refuses to load safely, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not a loadable YAML config ({str(err).splitlines()[0]})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections (model, data, trainer, ...)")
    return data


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the mappings on the way.

    Raises:
        ConfigError: a part of the path is a value, not a section.
    """
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node.get(part), list) and node[part] and isinstance(node[part][-1], dict):
            # ``--trainer.callbacks.patience 3`` sets an argument of the list's last class, as jsonargparse does
            node = node[part][-1].setdefault("init_args", {})
            continue
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{key}': '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at ``a.b.c``, or ``default`` when any part is missing."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def merge(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """``other`` laid over ``base``: mappings merge key by key, anything else (lists too) is replaced,
    as jsonargparse merges several ``--config`` files."""
    out = copy.deepcopy(dict(base))
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose value differs between two nested configs (added or removed keys included), sorted.

    >>> changed_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0})
    ['a.c', 'd']
    """
    keys = []
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            keys += changed_keys(old, new, f"{prefix}{key}.")
        elif old != new or (key in before) != (key in after):
            keys.append(f"{prefix}{key}")
    return keys


def resolve_config(source: ConfigSource, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of ``source`` (a YAML path or a dict) with each dotted override applied in order.

    Raises:
        ConfigError: ``source`` is neither, or as ``read_yaml`` and ``set_dotted``.
    """
    if not isinstance(source, str | Path | Mapping):
        raise ConfigError(f"a config is a YAML path or a mapping of sections, got {type(source).__name__}")
    config = read_yaml(source) if isinstance(source, str | Path) else copy.deepcopy(dict(source))
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    return config


def _class_path(section: Any) -> str | None:
    if isinstance(section, str):  # ``--model path.to.Class`` names the class alone
        return section
    return section.get("class_path") if isinstance(section, Mapping) else None


def _net(model: Any) -> Any:
    init = model.get("init_args") if isinstance(model, Mapping) else None
    return init.get("net") if isinstance(init, Mapping) else None


def model_entry(config: Mapping[str, Any]) -> ModelEntry | None:
    """The registry entry of a config's model: the tree class itself, or a ``Classifier``'s backbone."""
    model = config.get("model")
    net = _net(model)
    return entry_for(_class_path(model)) or entry_for(_class_path(net))


def model_short_name(config: Mapping[str, Any]) -> str:
    """The registry name of a config's model (``lstm``, ``xgboost``), or its class name in lower case."""
    entry = model_entry(config)
    if entry is not None:
        return entry.name
    model = config.get("model")
    net = _net(model)
    path = _class_path(net) or _class_path(model) or "model"
    return path.rsplit(".", 1)[-1].lower()


def family_name(config: Mapping[str, Any]) -> str:
    """The family recorded for the config's model in the registry; an unregistered model is a LightningModule
    (LightningCLI's own ``class_path``), so it runs as ``neural``."""
    entry = model_entry(config)
    return entry.family if entry is not None else "neural"


def _value(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--{key}: value '{text}' is not readable ({str(err).splitlines()[0]})") from err


def config_from_flags(argv: list[str], base: Mapping[str, Any] | None = None, strict: bool = True) -> dict[str, Any]:
    """The config that ``--config`` files and ``--key value`` flags describe, in order (later wins).

    ``--config FILE`` (repeatable) loads and merges YAML; every other ``--a.b.c VALUE`` or ``--a.b.c=VALUE``
    is a dotted override whose value is read as YAML (``3`` -> int, ``false`` -> bool, ``null`` -> None).
    This is the form of an experiment's ``fit_args`` and of the run flags ``ensemble tune`` passes on.
    ``base`` is the config the flags apply to (``--trainer.callbacks+=X`` appends to its list).

    Raises:
        ConfigError: a flag without a value, or an argument that is not a flag (when ``strict``).
    """
    config: dict[str, Any] = copy.deepcopy(dict(base or {}))
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") and arg != "-c":
            if strict:
                raise ConfigError(f"unexpected argument '{arg}'; flags look like --data.horizon 20")
            i += 1
            continue
        key, eq, text = arg.lstrip("-").partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"--{key} needs a value")
            text, i = argv[i + 1], i + 1
        i += 1
        if key in ("config", "c"):
            config = merge(config, read_yaml(text))
        elif key.endswith("+"):  # ``--trainer.callbacks+=Class``: append to the list, as jsonargparse does
            value = _value(text, key)
            items = get_dotted(config, key[:-1]) or []
            items = [*items, *(value if isinstance(value, list) else [value])]
            set_dotted(config, key[:-1], [{"class_path": v} if isinstance(v, str) else v for v in items])
        else:
            set_dotted(config, key, _value(text, key))
    return config


def check_plateau_mode(model: Mapping[str, Any], mode: str) -> None:
    """A ``ReduceLROnPlateau`` scheduler watches ``checkpoint.monitor`` (linked into ``model.init_args.monitor``);
    refuse one whose ``mode`` is not ``checkpoint.mode``: it would cut the learning rate while the metric improves.

    Raises:
        ConfigError: naming both modes and the key to set.
    """
    scheduler = (model.get("init_args") or {}).get("scheduler") or {}
    if not isinstance(scheduler, Mapping) or not str(scheduler.get("class_path", "")).endswith("ReduceLROnPlateau"):
        return
    given = (scheduler.get("init_args") or {}).get("mode", "min")  # torch's default
    if given != mode:
        raise ConfigError(f"model.init_args.scheduler ReduceLROnPlateau has mode '{given}' but watches "
                          f"checkpoint.monitor in mode '{mode}'; set its init_args.mode: {mode}")  # fmt: skip


def check_monitor_mode(monitor: str | None, mode: str | None, key: str) -> None:
    """Refuse a checkpoint or early-stopping ``mode`` that runs against its suite metric: ``max`` on
    ``val/log_loss`` would keep the worst epoch. A metric outside the suite (a user's own) keeps its mode.

    Raises:
        ConfigError: naming the key, the metric and the mode to set.
    """
    if monitor is None or mode is None:
        return
    name = monitor.rsplit("/", 1)[-1]
    if name != "loss" and name not in suite_metric_names():
        return
    wanted = metric_mode(monitor)
    if mode != wanted:
        better = "lower" if wanted == "min" else "higher"
        raise ConfigError(f"{key} watches {monitor}, where {better} is better, in mode '{mode}'; "
                          f"set its mode: {wanted}")


def _callback_monitors(callbacks: Any) -> list[tuple[str, str | None, str | None]]:
    """``(class name, monitor, mode)`` of every callback in ``trainer.callbacks`` (``{class_path, init_args}``
    dicts, parsed namespaces or instances); a mode left out of a dict is the default, ``min``."""
    out = []
    for callback in callbacks or []:
        callback = callback.as_dict() if hasattr(callback, "as_dict") else callback
        if isinstance(callback, Mapping):
            args, name = callback.get("init_args") or {}, str(callback.get("class_path", ""))
            monitor, mode = args.get("monitor"), args.get("mode", "min")
        else:
            name, monitor = type(callback).__name__, getattr(callback, "monitor", None)
            mode = getattr(callback, "mode", None)
        out.append((name.rsplit(".", 1)[-1], monitor, mode))
    return out


def check_callback_modes(checkpoint: Mapping[str, Any], callbacks: Any) -> None:
    """``check_monitor_mode`` for ``checkpoint`` (``monitor``, ``mode``) and every early-stopping or checkpoint
    callback of a config's ``trainer.callbacks``; then one monitor: every ``EarlyStopping`` must watch the
    checkpoint's metric in its mode (``check_one_monitor``). Early stopping on one metric while the best
    checkpoint is chosen on another stops at a point unrelated to the checkpoint kept (or keeps an epoch the
    stopping rule never judged), so the pair is refused rather than one silently overriding the other.

    Raises:
        ConfigError: a wrong mode (naming the key, metric and mode to set), or an EarlyStopping whose monitor
            or mode differs from the checkpoint's, naming both and the keys to set.
    """
    check_monitor_mode(checkpoint.get("monitor"), checkpoint.get("mode", "min"), "checkpoint")
    for name, monitor, mode in _callback_monitors(callbacks):
        if name.endswith(("EarlyStopping", "Checkpoint")):
            check_monitor_mode(monitor, mode, name)
    check_one_monitor(checkpoint, callbacks)


def check_one_monitor(checkpoint: Mapping[str, Any], callbacks: Any) -> None:
    """Every ``EarlyStopping`` in ``callbacks`` watches ``checkpoint``'s monitor in its mode (see
    ``check_callback_modes``).

    Raises:
        ConfigError: naming the callback's and the checkpoint's monitor and mode, and the keys to set.
    """
    watched, kept = checkpoint.get("monitor"), checkpoint.get("mode", "min")
    for name, monitor, mode in _callback_monitors(callbacks):
        if name.endswith("EarlyStopping") and watched is not None and (monitor, mode) != (watched, kept):
            raise ConfigError(
                f"{name} watches {monitor} (mode {mode}) but the checkpoint keeps the best {watched} (mode {kept}); "
                "they must watch one metric: set checkpoint.monitor/mode and the EarlyStopping callback's "
                f"init_args monitor/mode to the same (e.g. --checkpoint.monitor {monitor} --checkpoint.mode {mode}), "
                "or drop early stopping with --trainer.callbacks '[]'"
            )


def check_modes(model: Mapping[str, Any], checkpoint: Mapping[str, Any], callbacks: Any) -> None:
    """A net run's mode checks before training: ``check_plateau_mode`` and ``check_callback_modes``.

    Raises:
        ConfigError: as those do.
    """
    check_plateau_mode(model, checkpoint["mode"])
    check_callback_modes(checkpoint, callbacks)
