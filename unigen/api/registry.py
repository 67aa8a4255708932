"""Plugin loading (pluggy, entry-point group `unigen`) and the typed registry of kinds."""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from unigen.api import hookspecs
from unigen.errors import Diagnostic, Path, UnigenError, did_you_mean

GROUP = "unigen"


KINDS = ("families", "terms", "objectives", "networks", "distributions", "datasets", "metrics", "rules", "optimizers", "trackers")


# Singular names for messages.
KIND_NOUN = {
    "families": "family",
    "terms": "term",
    "objectives": "adversarial objective",
    "networks": "network architecture",
    "distributions": "distribution",
    "datasets": "dataset",
    "metrics": "metric",
    "rules": "validation rule",
    "optimizers": "optimizer",
    "trackers": "tracker",
}


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    plugin: str
    dist: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    dist: str
    version: str
    error: str = ""  # empty when the plugin loaded


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    plugins: list[PluginInfo] = field(default_factory=list)
    problems: list[Diagnostic] = field(default_factory=list)

    # ------------------------------------------------------------------ lookup
    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def has(self, kind: str, name: str) -> bool:
        return name in self.entries[kind]

    def get(self, kind: str, name: str, path: Path = ()) -> Any:
        entry = self.entries[kind].get(name)
        if entry is None:
            raise UnigenError([self.unknown(kind, name, path)])
        return entry.obj

    def unknown(self, kind: str, name: str, path: Path = ()) -> Diagnostic:
        hint = did_you_mean(name, self.names(kind))
        broken = [p for p in self.plugins if p.error]
        if broken:
            hint += " Plugins that failed to load (see `unigen plugins`): " + ", ".join(p.name for p in broken) + "."
        return Diagnostic("G001", f"unknown {KIND_NOUN[kind]} `{name}`.", path, hint)

    def all(self, kind: str) -> list[Entry]:
        return [self.entries[kind][n] for n in self.names(kind)]

    def options(self, kind: str, name: str, options: dict[str, Any], path: Path) -> tuple[Any, list[Diagnostic]]:
        """Validate a kind's options against its `Options` model (if it declares one)."""
        model = getattr(self.get(kind, name), "Options", None)
        if model is None:
            if options:
                return options, [Diagnostic("G016", f"{KIND_NOUN[kind]} `{name}` takes no options; got {', '.join(map(str, options))}.", path + (next(iter(options)),), "remove them.")]
            return options, []
        return validate_options(model, options, path, f"{KIND_NOUN[kind]} `{name}`")

    # ---------------------------------------------------------- registration
    def _register(self, kind: str, plugin: str, dist: str, name: str, obj: Any) -> None:
        current = self.entries[kind].get(name)
        if current is not None:
            self.problems.append(Diagnostic(
                "P002",
                f"{KIND_NOUN[kind]} `{name}` is registered by plugin `{current.plugin}` ({current.dist}) and again by `{plugin}` ({dist}); the first is kept.",
                hint=f"rename one, or block a plugin with UNIGEN_BLOCK_PLUGINS={plugin}.",
            ))
            return
        self.entries[kind][name] = Entry(kind, name, obj, plugin, dist)

    def complete_family(self, doc: dict[str, Any], smap: Any) -> dict[str, Any]:
        name = doc["family"]
        if not self.has("families", name):
            raise smap.error([self.unknown("families", name, ("family",))])
        return dict(self.get("families", name).complete(doc))


def validate_options(model: type[BaseModel], options: dict[str, Any], path: Path, what: str) -> tuple[Any, list[Diagnostic]]:
    try:
        return model.model_validate(options), []
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = path + tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                out.append(Diagnostic("G016", f"{what} has no option `{err['loc'][-1]}`.", loc, did_you_mean(str(err["loc"][-1]), list(model.model_fields))))
            else:
                out.append(Diagnostic("G016", f"{what}: {err['msg']} (got {err.get('input')!r}).", loc, ""))
        return None, out


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("unigen")
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=GROUP), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))


def load_registry(extra: Iterable[ModuleType | object] = (), autoload: bool | None = None) -> Registry:
    """Load the installed plugins (and `extra` plugin objects), isolated from each other.

    `UNIGEN_DISABLE_PLUGIN_AUTOLOAD=1` keeps only unigen's own built-in plugins;
    `UNIGEN_BLOCK_PLUGINS=a,b` skips the named entry points.
    """
    if autoload is None:
        autoload = os.environ.get("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    blocked = {b.strip() for b in os.environ.get("UNIGEN_BLOCK_PLUGINS", "").split(",") if b.strip()}
    pm = plugin_manager()
    reg = Registry()
    loaded: list[tuple[object, str, str]] = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in blocked or (not autoload and dist != "unigen"):
            continue
        try:
            module = ep.load()
            api = getattr(module, "UNIGEN_PLUGIN_API", hookspecs.PLUGIN_API)
            if api != hookspecs.PLUGIN_API:
                raise _ApiMismatch(f"built for plugin API {api}, this unigen speaks {hookspecs.PLUGIN_API}")
            pm.register(module, name=ep.name)
        except _ApiMismatch as exc:
            reg.plugins.append(PluginInfo(ep.name, dist, version, str(exc)))
            reg.problems.append(Diagnostic("P003", f"plugin `{ep.name}` ({dist} {version}) is {exc}.", hint=f"upgrade `{dist}` or unigen, or block it with UNIGEN_BLOCK_PLUGINS={ep.name}."))
            continue
        except Exception as exc:  # a broken plugin must not stop the others
            reg.plugins.append(PluginInfo(ep.name, dist, version, _short(exc)))
            reg.problems.append(Diagnostic("P001", f"plugin `{ep.name}` ({dist} {version}) failed to load: {_short(exc)}.", hint=f"fix or reinstall `{dist}`, or block it with UNIGEN_BLOCK_PLUGINS={ep.name}."))
            continue
        loaded.append((module, ep.name, dist))
        reg.plugins.append(PluginInfo(ep.name, dist, version))
    for obj in extra:
        name = getattr(obj, "__name__", type(obj).__name__)
        pm.register(obj, name=name)
        loaded.append((obj, name, "<local>"))
        reg.plugins.append(PluginInfo(name, "<local>", ""))
    dist_of = {name: dist for _, name, dist in loaded}
    for kind in KINDS:
        caller = getattr(pm.hook, f"unigen_register_{kind}")
        for impl in caller.get_hookimpls():
            plugin = impl.plugin_name
            try:
                impl.function(register=partial(reg._register, kind, plugin, dist_of.get(plugin, "?")))
            except Exception as exc:
                reg.problems.append(Diagnostic("P001", f"plugin `{plugin}` failed while registering {kind}: {_short(exc)}.", hint="fix the plugin or block it with UNIGEN_BLOCK_PLUGINS."))
                reg.plugins[:] = [p if p.name != plugin else PluginInfo(p.name, p.dist, p.version, _short(exc)) for p in reg.plugins]
    if not any(reg.entries[k] for k in KINDS):
        reg.problems.append(Diagnostic("P004", "no plugins are registered, so no dataset, network or term is known.", hint="install unigen with `pip install -e .` so its built-in plugins' entry points exist."))
    return reg


class _ApiMismatch(Exception):
    pass


def _short(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_registry()
    return _DEFAULT
