"""Subcommands of the ``ensemble`` CLI that are not LightningCLI's own."""
