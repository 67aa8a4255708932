"""The `unigen` command line."""

from unigen.cli.commands import main

__all__ = ["main"]
