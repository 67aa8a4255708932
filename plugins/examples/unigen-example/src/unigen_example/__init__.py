"""An example unigen plugin: one network, one term, one family.

unigen finds it through the entry point `example = "unigen_example"` in the group `unigen`
(see pyproject.toml) and calls the hooks below, each with a `register(name, obj)` callback.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .family import RAEFamily
from .nets import ResMLP
from .terms import CodeL2

UNIGEN_PLUGIN_API = 1  # the hook API this plugin is written for; unigen refuses a mismatch (P003)


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("resmlp", ResMLP())


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("code_l2", CodeL2())


@hookimpl
def unigen_register_families(register: Any) -> None:
    register("rae", RAEFamily())
