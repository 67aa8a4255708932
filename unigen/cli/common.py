"""What every command shares: the installed plugins, loaded once, with their problems shown."""

from __future__ import annotations

import sys

from unigen.api.registry import Registry


def registry() -> Registry:
    """The registry of installed plugins; a plugin that failed to load is a warning here (a
    spec that needs it fails with its own message)."""
    from unigen.api.registry import default_registry

    reg = default_registry()
    for d in reg.problems:
        print(f"warning: {d}", file=sys.stderr)
    return reg
