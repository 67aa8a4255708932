"""What every command shares: the installed plugins, loaded once, with their problems shown."""

from __future__ import annotations

import sys

from unigen.api.registry import Registry
from unigen.errors import UnigenError


def registry(clashes_ok: bool = False) -> Registry:
    """The registry of installed plugins; a plugin that failed to load is a warning here (a
    spec that needs it fails with its own message); two plugins registering one name (P002)
    stop every command that loads plugins until the user blocks one."""
    from unigen.api.registry import default_registry

    reg = default_registry()
    clashes = [d for d in reg.problems if d.code == "P002"]
    if clashes and not clashes_ok:  # two plugins claim one name: which one a spec gets must be the user's choice
        raise UnigenError(clashes)
    for d in reg.problems:
        print(f"warning: {d}", file=sys.stderr)
    return reg
