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


KINDS = ("families", "terms", "objectives", "networks", "distributions", "datasets", "metrics", "rules", "optimizers", "trackers", "samplers")


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
    "samplers": "sampler",
}


# What an object of each kind must have, by duck typing: methods the core calls (callable
# attributes), and the base class of `unigen.api.kinds` that has them. An optimizer or a tracker
# is itself called (a factory).
NEEDS: dict[str, tuple[str, ...]] = {
    "families": ("complete",),
    "terms": ("bind",),
    "objectives": ("d_loss", "g_loss"),
    "networks": ("build",),
    "distributions": ("make",),
    "datasets": ("fields", "load"),
    "metrics": ("compute",),
    "rules": ("check",),
    "optimizers": (),
    "trackers": (),
    "samplers": ("fill",),
}


SHAPE_HINT = {
    "families": "subclass `unigen.api.kinds.Family`",
    "terms": "subclass `unigen.api.kinds.Term`",
    "objectives": "subclass `unigen.api.kinds.Objective`",
    "networks": "subclass `unigen.api.kinds.Arch`",
    "distributions": "subclass `unigen.api.kinds.Dist`",
    "datasets": "subclass `unigen.api.kinds.DatasetKind`",
    "metrics": "subclass `unigen.api.kinds.Metric`",
    "rules": "subclass `unigen.api.kinds.Rule`",
    "optimizers": "register a callable `(params, **options) -> torch.optim.Optimizer`",
    "trackers": "register a factory (e.g. a class) of objects with `on_start`, `on_metrics` and `on_end`",
    "samplers": "subclass `unigen.api.kinds.Sampler`",
}


# The edge kinds a term may attach to (`Term.target`; None: the whole model).
EDGE_KINDS = ("generative", "inference", "adversarial", "undirected")


def shape_problems(kind: str, obj: Any) -> list[str]:
    """What `obj` lacks to be an object of `kind` (empty when it has all it needs)."""
    out = []
    if kind in ("optimizers", "trackers") and not callable(obj):
        out.append("it is not callable")
    for attr in NEEDS[kind]:
        if not hasattr(obj, attr):
            out.append(f"it has no method `{attr}`")
        elif not callable(getattr(obj, attr)):
            out.append(f"its `{attr}` is not callable")
    if kind == "terms":
        kinds = ", ".join(f"`{k}`" for k in EDGE_KINDS)
        if not hasattr(obj, "target"):
            out.append(f"it has no `target` (None for a whole-model term, or the edge kind it attaches to: {kinds})")
        elif obj.target is not None and obj.target not in EDGE_KINDS:
            out.append(f"its `target` is {obj.target!r}; expected None or one of {kinds}")
    model = getattr(obj, "Options", None)
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        given = f"`{model.__name__}`" if isinstance(model, type) else f"an object of type `{type(model).__name__}`"
        out.append(f"its `Options` is {given}, not a pydantic model class (or None)")
    return out


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
        missing = shape_problems(kind, obj)
        if missing:
            noun = KIND_NOUN[kind]
            article = "an" if noun[0] in "aeiou" else "a"
            error = f"{noun} `{name}` is not {article} {noun}: {'; '.join(missing)}"
            where = next((f"{p.dist} {p.version}".strip() for p in self.plugins if p.name == plugin), dist)
            self.problems.append(Diagnostic(
                "P006",
                f"plugin `{plugin}` ({where}) registered {noun} `{name}` as an object of type `{type(obj).__name__}`, which is not {article} {noun}: {'; '.join(missing)}; it is not registered.",
                hint=f"{SHAPE_HINT[kind]}, or block the plugin with UNIGEN_BLOCK_PLUGINS={plugin}.",
            ))
            self.plugins[:] = [p if p.name != plugin else PluginInfo(p.name, p.dist, p.version, "; ".join(filter(None, (p.error, error)))) for p in self.plugins]
            return
        current = self.entries[kind].get(name)
        if current is not None:
            self.problems.append(Diagnostic(
                "P002",
                f"{KIND_NOUN[kind]} `{name}` is registered by plugin `{current.plugin}` ({current.dist}) and again by `{plugin}` ({dist}); a spec naming `{name}` would get either, so commands refuse to run until one is chosen.",
                hint=f"choose one: UNIGEN_BLOCK_PLUGINS={plugin} keeps `{current.plugin}`'s, UNIGEN_BLOCK_PLUGINS={current.plugin} keeps `{plugin}`'s; or rename it in the plugin.",
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
        value = model.model_validate(options)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = path + tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                out.append(Diagnostic("G016", f"{what} has no option `{err['loc'][-1]}`.", loc, did_you_mean(str(err["loc"][-1]), list(model.model_fields))))
            else:
                out.append(Diagnostic("G016", f"{what}: {err['msg']} (got {err.get('input')!r}).", loc, ""))
        return None, out
    try:
        booleans = list(_booleans_as_numbers(options, value.model_dump()))
    except Exception:  # a model that cannot dump itself: its values are as it read them
        booleans = []
    if booleans:
        return None, [Diagnostic("G016", f"{what}: `{'true' if given else 'false'}` is a boolean, and the option takes a number (it would be read as {int(given)}).", path + at, "write a number; `true` and `false` are no numbers.")
                      for at, given in booleans]
    return value, []


def _booleans_as_numbers(given: Any, read: Any, at: Path = ()) -> Iterable[tuple[Path, bool]]:
    """Where `given` (the options as written) holds `true` or `false` that the options model read
    as a number (`hidden: [true]` as [1]): pydantic's lax ints and floats take booleans."""
    if isinstance(given, bool):
        if isinstance(read, (int, float)) and not isinstance(read, bool):
            yield at, given
    elif isinstance(given, dict) and isinstance(read, dict):
        for key, item in given.items():
            if key in read:
                yield from _booleans_as_numbers(item, read[key], at + (key,))
    elif isinstance(given, (list, tuple)) and isinstance(read, (list, tuple)) and len(given) == len(read):
        for i, (item, got) in enumerate(zip(given, read)):
            yield from _booleans_as_numbers(item, got, at + (i,))


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("unigen")
    pm.add_hookspecs(hookspecs)
    return pm


def hook_names(pm: pluggy.PluginManager | None = None) -> list[str]:
    """The hooks a plugin may implement: those `unigen.api.hookspecs` specifies."""
    pm = pm or plugin_manager()
    return sorted(name for name, caller in vars(pm.hook).items() if not name.startswith("_") and caller.has_spec())


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=GROUP))


def _load_order(ep: metadata.EntryPoint) -> tuple[bool, str, str]:
    """unigen's own plugins first, then the others by distribution and name: a third-party plugin
    registering a built-in name (`mlp`, `elbo`) is the second of the two (P002), never the one kept."""
    dist = ep.dist.name if ep.dist else ""
    return (dist != "unigen", dist, ep.name)


def load_registry(extra: Iterable[ModuleType | object] = (), autoload: bool | None = None, own_only: bool = False) -> Registry:
    """Load the installed plugins (and `extra` plugin objects), isolated from each other.

    `UNIGEN_DISABLE_PLUGIN_AUTOLOAD=1` keeps only unigen's own built-in plugins;
    `UNIGEN_BLOCK_PLUGINS=a,b` blocks the named plugins in the plugin manager, so they are
    neither imported nor registered. `own_only=True` loads unigen's own plugins alone, whatever
    is installed beside them and whatever the environment says: neither variable is read (the
    generated reference of the kinds, `docs/kinds.md`, is the same on every machine).
    """
    if own_only:
        autoload = False
    elif autoload is None:
        autoload = os.environ.get("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    pm = plugin_manager()
    for name in ("" if own_only else os.environ.get("UNIGEN_BLOCK_PLUGINS", "")).split(","):
        if name.strip():
            pm.set_blocked(name.strip())
    reg = Registry()
    dist_of: dict[str, str] = {}
    # The entry points are loaded here rather than by `pm.load_setuptools_entrypoints(GROUP)`,
    # which imports and registers them all in one loop: the first plugin that fails to import
    # would stop every plugin after it (no per-plugin isolation, P001), a plugin built for
    # another plugin API would be registered before it could be refused (P003), it cannot keep
    # only unigen's own distribution (UNIGEN_DISABLE_PLUGIN_AUTOLOAD) and it never calls
    # `check_pending()`. Everything after the import is pluggy's: the block list
    # (`set_blocked`/`is_blocked`), `register`, `check_pending()` per plugin, and the hook calls.
    for ep in sorted(_entry_points(), key=_load_order):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if pm.is_blocked(ep.name) or (not autoload and dist != "unigen"):
            continue
        try:
            module = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not stop the others, nor end the command
            reg.plugins.append(PluginInfo(ep.name, dist, version, _short(exc)))
            reg.problems.append(Diagnostic("P001", f"plugin `{ep.name}` ({dist} {version}) failed to load: {_short(exc)}.", hint=f"fix or reinstall `{dist}`, or block it with UNIGEN_BLOCK_PLUGINS={ep.name}."))
            continue
        if _add_plugin(pm, reg, module, ep.name, dist, version):
            dist_of[ep.name] = dist
    for obj in extra:
        name = getattr(obj, "__name__", type(obj).__name__)
        if _add_plugin(pm, reg, obj, name, "<local>", ""):
            dist_of[name] = "<local>"
    _register_kinds(pm, reg, dist_of)
    if not any(reg.entries[k] for k in KINDS):
        reg.problems.append(Diagnostic("P004", "no plugins are registered, so no dataset, network or term is known.", hint="install unigen with `pip install -e .` so its built-in plugins' entry points exist."))
    return reg


def _register_kinds(pm: pluggy.PluginManager, reg: Registry, dist_of: dict[str, str]) -> None:
    """Every registered plugin's `unigen_register_*` hooks, called with a `register` callback
    that knows the calling plugin; a plugin that raises is reported (P001) and marked failed."""
    plugins = [p for p in pm.get_plugins() if p is not None]  # None marks a blocked name
    for kind in KINDS:
        hook = f"unigen_register_{kind}"
        # Plugins in the order they were registered (built-ins first), so that of two plugins
        # registering one name the first is kept (P002). Each plugin's implementations are
        # called through a hook caller of that plugin alone: `register` then knows which plugin
        # calls it, and one that raises does not keep the others from registering.
        impls: dict[str, list[Any]] = {}
        for impl in getattr(pm.hook, hook).get_hookimpls():
            impls.setdefault(impl.plugin_name, []).append(impl)
        for plugin, own in impls.items():
            register = partial(reg._register, kind, plugin, dist_of.get(plugin, "?"))
            try:
                caller = pm.subset_hook_caller(hook, [p for p in plugins if p is not own[0].plugin])
                if all(i.plugin is own[0].plugin for i in caller.get_hookimpls()):
                    caller(register=register)
                else:  # pluggy keeps a plugin whose implementation has another attribute name (`specname`)
                    for impl in own:
                        impl.function(register=register)
            except (Exception, SystemExit) as exc:  # sys.exit (argparse too) in a hook ends nothing but the plugin
                reg.problems.append(Diagnostic("P001", f"plugin `{plugin}` failed while registering {kind}: {_short(exc)}.", hint="fix the plugin or block it with UNIGEN_BLOCK_PLUGINS."))
                reg.plugins[:] = [p if p.name != plugin else PluginInfo(p.name, p.dist, p.version, _short(exc)) for p in reg.plugins]


def _add_plugin(pm: pluggy.PluginManager, reg: Registry, plugin: object, name: str, dist: str, version: str) -> bool:
    """Register one plugin and check its hooks; on any problem it is reported, left
    unregistered (none of its hooks is called) and listed as failed. True when it is in."""
    where = f"`{name}` ({dist} {version})" if version else f"`{name}` ({dist})"
    block = f"or block it with UNIGEN_BLOCK_PLUGINS={name}."

    def failed(error: str, *diags: Diagnostic) -> bool:
        if pm.get_plugin(name) is plugin:  # pluggy may have registered part of it before raising
            pm.unregister(plugin, name)
        reg.plugins.append(PluginInfo(name, dist, version, error))
        reg.problems.extend(diags)
        return False

    api = getattr(plugin, "UNIGEN_PLUGIN_API", hookspecs.PLUGIN_API)
    if api != hookspecs.PLUGIN_API:
        error = f"built for plugin API {api}, this unigen speaks {hookspecs.PLUGIN_API}"
        return failed(error, Diagnostic("P003", f"plugin {where} is {error}.", hint=f"upgrade `{dist}` or unigen, {block}"))
    try:
        if pm.register(plugin, name=name) is None:  # blocked
            return False
    except Exception as exc:  # e.g. a known hook with the wrong arguments
        return failed(_short(exc), Diagnostic("P001", f"plugin {where} failed to load: {_short(exc)}.", hint=f"fix or reinstall `{dist}`, {block}"))
    try:
        pm.check_pending()  # only this plugin can have a pending hook: a failed one is unregistered
    except pluggy.PluginValidationError as exc:
        unknown = _unknown_hooks(pm, plugin) or [str(exc)]
        valid = hook_names(pm)
        diags = []
        for hook in unknown:
            suggestion = did_you_mean(hook, valid)  # "choose one of: ..." already lists them all
            if not suggestion.startswith("choose one of"):
                suggestion += " The hooks are: " + ", ".join(f"`{h}`" for h in valid) + "."
            diags.append(Diagnostic("P005", f"plugin {where} implements the unknown hook `{hook}`; no hookspec has that name, so none of the plugin's hooks is registered.", hint=f"{suggestion} Rename the function, {block}"))
        return failed("unknown hook " + ", ".join(f"`{h}`" for h in unknown), *diags)
    reg.plugins.append(PluginInfo(name, dist, version))
    return True


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """The hooks `plugin` implements that no hookspec declares (as `check_pending` finds them)."""
    return sorted(
        name
        for name, caller in vars(pm.hook).items()
        if not name.startswith("_") and not caller.has_spec() and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
    )


def _short(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    if isinstance(exc, SystemExit):  # sys.exit() or an argparse parser of the plugin's own
        return f"it called sys.exit({exc.code!r}){where}"
    return f"{type(exc).__name__}: {exc}{where}"


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_registry()
    return _DEFAULT
