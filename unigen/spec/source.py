"""YAML in, plain data and a map from dotted paths to file positions out.

Safe loading only (``yaml.SafeLoader`` composes the node tree, and any tag beyond plain
mappings, lists and scalars is refused), duplicate keys rejected, aliases bounded, and
YAML 1.2 scalars: ``1e-3`` is a float rather than PyYAML's YAML 1.1 string, and only
``true``/``false`` are booleans (not ``yes``, ``no``, ``on``, ``off``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from unigen.errors import Diagnostic, Path, UnigenError


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.1 needs a dot in a float (`1.0e-3`); users write `1e-3` and mean a number.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# YAML 1.1 also reads yes/no/on/off as booleans, so `description: no` would not be text.
# YAML 1.2 keeps true/false only (boolean fields still take `yes`: pydantic converts it).
for _first, _resolvers in list(_Loader.yaml_implicit_resolvers.items()):
    _Loader.yaml_implicit_resolvers[_first] = [(tag, rx) for tag, rx in _resolvers if tag != "tag:yaml.org,2002:bool"]


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass
class SourceMap:
    """Where each dotted path of a loaded document starts in its file, and which paths a
    command-line override set: what is wrong there is located as `override 2 ...`."""

    file: str
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    overridden: dict[Path, tuple[int, str]] = field(default_factory=dict)  # path -> (number, `key=value`)

    def override(self, path: Path, number: int, text: str) -> None:
        """Record that override `number` (1-based) set `path`: what it replaced below is its own."""
        for known in [p for p in self.overridden if p[: len(path)] == path]:
            del self.overridden[known]
        self.overridden[path] = (number, text)

    def _override_at(self, path: Path) -> tuple[int, str] | None:
        for n in range(len(path), 0, -1):
            if path[:n] in self.overridden:
                return self.overridden[path[:n]]
        return None

    def locate(self, diag: Diagnostic) -> Diagnostic:
        path = tuple(diag.path)
        given = self._override_at(path)
        if given is not None:  # the value came from the command line, not from the file
            return diag.located(f"override {given[0]} `{given[1]}`", 0, 0)
        # The nearest ancestor that exists in the file: a missing key is reported where
        # its parent mapping starts; what a family filled in (a whole top-level key the
        # file does not have) points at `family`.
        while path and path not in self.positions:
            path = path[:-1]
        if path == () and diag.path and ("family",) in self.positions and diag.code != "S003":
            line, col = self.positions[("family",)]
        else:
            line, col = self.positions.get(path, (1, 1))
        return diag.located(self.file, line, col)

    def error(self, diags: list[Diagnostic], exit_code: int = 2) -> UnigenError:
        located = [self.locate(d) for d in diags]
        numbers = {f"override {n} `{text}`": n for n, text in self.overridden.values()}
        # in file order, then the command line's overrides in their order
        return UnigenError(sorted(located, key=lambda d: (d.file in numbers, numbers.get(d.file, 0), d.line, d.col)), exit_code)


_MAP, _SEQ, _MERGE, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "merge", "null"))


# Scalar tags a spec may carry (explicitly or by resolution); everything else, notably
# `!!python/...`, is refused rather than constructed or silently dropped.
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}


# Aliases can make a small file expand into a huge document ("billion laughs").
MAX_VALUES = 100_000


# Lists and mappings nested deeper than this are refused (a spec is a few levels deep).
MAX_DEPTH = 64


def _empty(file: str) -> UnigenError:
    return UnigenError([Diagnostic(
        "Y003",
        "the spec file is empty; expected a mapping with `unigen: 1`, `name`, `data`, `variables`, `networks`, `edges` and `phases`.",
        hint="start from a file in specs/, or write `unigen: 1`, `name: my-model` and `family: <name>` to take a registered family's defaults (`unigen plugins` lists them).",
        file=file, line=1, col=1,
    )])


def load_yaml(text: str, file: str = "<spec>") -> tuple[Any, SourceMap]:
    smap = SourceMap(file)
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.lstrip("\ufeff").splitlines()):
        raise _empty(file)
    try:
        loader = _Loader(text)  # the reader rejects control characters right here
    except yaml.reader.ReaderError as exc:
        raise UnigenError([_reader_error(exc, text, file)]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise UnigenError([_syntax_error(exc, file)]) from None
    except yaml.reader.ReaderError as exc:
        raise UnigenError([_reader_error(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise UnigenError([Diagnostic("Y001", f"YAML syntax error: {exc}.", file=file, line=1, col=1)]) from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise UnigenError([_too_deep(text, file)]) from None
    finally:
        loader.dispose()
    if node is None:
        raise _empty(file)
    walk = _Walk(loader, smap)
    try:
        data = walk.convert(node, ())
    except RecursionError:
        raise UnigenError([_too_deep(text, file)]) from None
    except _Bound as exc:
        raise UnigenError([_at(exc.node, "Y001", *_FILE_BOUNDS[exc.which], file)]) from None
    if walk.errors:
        unique = list(dict.fromkeys(walk.errors))  # an aliased node is walked once per use
        raise UnigenError(unique)
    if data is None:
        raise _empty(file)
    return data, smap


class _Bound(Exception):
    """A document past one of the bounds: `values` (too many), `aliases` (too many, through
    aliases) or `depth` (nested too deeply), met at `node`."""

    def __init__(self, which: str, node: yaml.Node) -> None:
        super().__init__(which)
        self.which, self.node = which, node


_FILE_BOUNDS = {
    "aliases": (f"the document expands to more than {MAX_VALUES} values through aliases; expected a spec of ordinary size.", "use fewer `*alias` references."),
    "values": (f"the document holds more than {MAX_VALUES} values; expected a spec of ordinary size (a few hundred).", "a spec describes a model, not data: keep data in a dataset's files."),
    "depth": (f"the document nests lists and mappings more than {MAX_DEPTH} levels deep here; expected a spec nested a few levels deep.", "flatten the nesting."),
}


# An override's value (`key=VALUE` on the command line) is one value of a spec: bounded in
# characters before it is parsed, and in the values it holds once aliases are expanded.
MAX_OVERRIDE_CHARS = 64 * 1024
MAX_OVERRIDE_VALUES = 10_000


class ValueBoundError(ValueError):
    """An override's value past a bound; `str()` says which, and `hint` what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def load_value(text: str) -> Any:
    """The YAML value of an override, read as spec files are (safe, YAML 1.2 scalars, aliases
    expanded), within MAX_OVERRIDE_CHARS characters and MAX_OVERRIDE_VALUES values (ValueBoundError
    names the bound it passes). Text that is no YAML, or holds what a spec refuses (a tag, a
    recursive alias, a duplicate key), is taken as the text itself."""
    if len(text) > MAX_OVERRIDE_CHARS:
        raise ValueBoundError(f"the value is {len(text)} characters long; expected at most {MAX_OVERRIDE_CHARS} (a spec's value is a few characters, a list a few dozen)", "give a shorter value, or write it in the spec file.")
    try:
        loader = _Loader(text)
    except yaml.YAMLError:  # a control character: the reader refuses it before parsing
        return text
    try:
        node = loader.get_single_node()
    except RecursionError:
        raise ValueBoundError(*_VALUE_BOUNDS["depth"]) from None
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()
    if node is None:  # only a comment
        return None
    walk = _Walk(loader, SourceMap("<override>"), MAX_OVERRIDE_VALUES)
    try:
        value = walk.convert(node, ())
    except RecursionError:
        raise ValueBoundError(*_VALUE_BOUNDS["depth"]) from None
    except _Bound as exc:
        raise ValueBoundError(*_VALUE_BOUNDS[exc.which]) from None
    return text if walk.errors else value


_VALUE_BOUNDS = {
    "aliases": (f"the value expands to more than {MAX_OVERRIDE_VALUES} values through YAML aliases (`*name`); expected at most {MAX_OVERRIDE_VALUES} values", "use fewer `*alias` references, or none: write the value out."),
    "values": (f"the value holds more than {MAX_OVERRIDE_VALUES} values; expected at most {MAX_OVERRIDE_VALUES} (an override sets one key of a spec)", "set a smaller value, or write it in the spec file."),
    "depth": (f"the value nests lists and mappings more than {MAX_DEPTH} levels deep; expected one nested a few levels deep", "flatten the nesting."),
}


def _too_deep(text: str, file: str) -> Diagnostic:
    """Nesting too deep to read: located where brackets or indentation first go past MAX_DEPTH."""
    line, col = 1, 1
    depth = 0
    for i, row in enumerate(text.splitlines(), 1):
        indent = len(row) - len(row.lstrip(" "))
        if indent > 2 * MAX_DEPTH:
            line, col = i, indent + 1
            break
        hit = False
        for j, ch in enumerate(row):
            depth += 1 if ch in "[{" else -1 if ch in "]}" else 0
            if depth > MAX_DEPTH:
                line, col, hit = i, j + 1, True
                break
        if hit:
            break
    return Diagnostic("Y001", f"the document nests lists and mappings too deeply to be read; expected a spec nested at most {MAX_DEPTH} levels deep.", hint="flatten the nesting; a spec is a few levels deep.", file=file, line=line, col=col)


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> Diagnostic:
    pos = exc.position
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
    return Diagnostic("Y001", f"YAML syntax error: character {char!r} is not allowed in YAML; expected printable text.", hint="delete the character, or save the file as plain UTF-8 text.", file=file, line=line, col=col)


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = (exc.problem or "").strip().removeprefix("but ") or str(exc)
    message = f"YAML syntax error: {problem}"
    context = (exc.context or "").strip()
    if context.startswith("expected"):  # e.g. "expected a single document in the stream"
        message += f"; {context}"
    elif context:
        cm = exc.context_mark
        if cm is not None and (cm.line + 1, cm.column + 1) != (line, col):
            context += f" that starts at line {cm.line + 1}, column {cm.column + 1}"
        message += f" ({context})"
    if "\t" in problem or "'\\t'" in problem:
        hint = "YAML does not allow tabs for indentation; indent with spaces."
    elif "another document" in problem:
        hint = "a spec file holds one document; remove the `---` line and what follows it."
    else:
        hint = "check indentation, colons, quotes and brackets on this line and the one before."
    return Diagnostic("Y001", message + ".", hint=hint, file=file, line=line, col=col)


def _show_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


class _Walk:
    """Node tree to plain data, recording where each dotted path starts."""

    def __init__(self, loader: _Loader, smap: SourceMap, limit: int = MAX_VALUES) -> None:
        self.loader, self.smap, self.limit = loader, smap, limit
        self.errors: list[Diagnostic] = []
        self.active: set[int] = set()  # nodes on the current path: an alias back into one is a cycle
        self.count = 0
        self.seen: set[int] = set()  # nodes converted so far: meeting one again is an alias's copy
        self.aliased = False

    def error(self, node: yaml.Node, message: str, hint: str = "", code: str = "Y001") -> None:
        self.errors.append(_at(node, code, message, self.smap.file, hint))

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if id(node) in self.seen:
            self.aliased = True
        self.seen.add(id(node))
        if self.count > self.limit:
            raise _Bound("aliases" if self.aliased else "values", node)
        self.smap.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if len(path) > MAX_DEPTH:
            raise _Bound("depth", node)
        if id(node) in self.active:
            self.error(node, "recursive alias: this value contains itself; expected a finite document.", "replace the `*alias` inside its own anchor.")
            return None
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag != (_MAP if isinstance(node, yaml.MappingNode) else _SEQ):
            self.error(node, f"tag `{_show_tag(node.tag)}` is not allowed; expected plain mappings, lists and scalars (spec files are loaded safely).", "remove the tag.")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.error(node, f"tag `{_show_tag(node.tag)}` is not allowed; expected a plain string, number, boolean or null (spec files are loaded safely).", "remove the tag.")
            return None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.error(node, f"bad value: {problem}.", "write a plain value or quote it.")
            return None
        except Exception:  # e.g. `!!timestamp 10000` or `!!int abc`: PyYAML's constructors raise anything
            self.error(node, f"bad value `{node.value}` for tag `{_show_tag(node.tag)}`; expected a value of that type.", "remove the tag, or write a value of its type.")
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        smap = self.smap
        explicit = {id(k) for k, _ in node.value if k.tag != _MERGE}
        try:
            self.loader.flatten_mapping(node)  # resolves `<<:` merge keys
        except yaml.YAMLError as exc:
            self.error(node, f"bad merge key `<<`: {getattr(exc, 'problem', None) or exc}.", "merge a mapping (`<<: *anchor`) or a list of them.")
            node.value = [(k, v) for k, v in node.value if k.tag != _MERGE]
        merged: set[str] = set()  # keys that came from `<<:`; an explicit key overrides them
        first_at: dict[str, int] = {}
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            from_merge = id(key_node) not in explicit
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                what = "a mapping" if isinstance(key_node, yaml.MappingNode) else "a list" if isinstance(key_node, yaml.SequenceNode) else "null"
                self.error(key_node, f"a key must be a plain name, not {what}.", "write `name: value`.")
                continue
            key = self._scalar(key_node)
            if key is None:
                continue  # a refused tag, already reported
            if not isinstance(key, (str, int, float, bool)):
                self.error(key_node, f"a key must be a plain name, not a {type(key).__name__}.", "quote the key.")
                continue
            key = key if isinstance(key, str) else str(key)
            if key in first_at:
                if key in merged or from_merge:
                    # `<<: *base` then `key: ...`: the explicit key wins; of two merge sources,
                    # PyYAML puts the one that wins last.
                    merged.discard(key)
                    pairs = [(k, v) for k, v in pairs if self._key_text(k) != key]
                    first_at[key] = key_node.start_mark.line + 1
                else:
                    self.error(key_node, f"duplicate key `{key}`: it is already given at line {first_at[key]}; expected each key once in a mapping.", "remove or rename one of them.", code="Y002")
                    continue
            if from_merge:
                merged.add(key)
            first_at.setdefault(key, key_node.start_mark.line + 1)
            pairs.append((key_node, value_node))
        node.value = pairs  # merges resolved, so an alias of this node is walked the same way
        out: dict[str, Any] = {}
        for key_node, value_node in pairs:
            key = self._key_text(key_node)
            smap.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.convert(value_node, path + (key,))
        return out

    def _key_text(self, key_node: yaml.Node) -> str:
        key = self.loader.construct_object(key_node, deep=True)
        return key if isinstance(key, str) else str(key)


def _at(node: yaml.Node, code: str, message: str, file: str, hint: str = "") -> Diagnostic:
    return Diagnostic(code, message, (), hint, file, node.start_mark.line + 1, node.start_mark.column + 1)
