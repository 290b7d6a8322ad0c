"""argparse for the commands that are not LightningCLI's: a bad flag is one line and exit 2, as everywhere."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ensemble.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise ``ConfigError`` (printed by the CLI as one line, exit 2)
    instead of printing the usage block and exiting; ``--help`` still prints the help."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def launcher_flags(argv: list[str]) -> list[str]:
    """``--launcher local`` (or ``=local``) is the short form of ``--launcher.kind local``."""
    return [f"--launcher.kind{a[len('--launcher'):]}" if a.split("=", 1)[0] == "--launcher" else a for a in argv]
