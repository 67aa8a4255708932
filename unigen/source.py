"""YAML in, plain data and a map from dotted paths to file positions out.

Safe loading only (``yaml.SafeLoader`` composes the node tree; no Python tags exist in
it), duplicate keys rejected, and YAML 1.2 floats such as ``1e-3`` read as floats rather
than PyYAML's YAML 1.1 strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, Path, UnigenError


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


@dataclass
class SourceMap:
    """Where each dotted path of a loaded document starts in its file."""

    file: str
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, diag: Diagnostic) -> Diagnostic:
        path = tuple(diag.path)
        # The nearest ancestor that exists in the file: a missing key is reported where
        # its parent mapping starts; defaults filled by a family point at `family`.
        while path and path not in self.positions:
            path = path[:-1]
        if path in self.positions:
            line, col = self.positions[path]
        elif ("family",) in self.positions and diag.path:
            line, col = self.positions[("family",)]
        else:
            line, col = self.positions.get((), (1, 1))
        return diag.located(self.file, line, col)

    def error(self, diags: list[Diagnostic], exit_code: int = 2) -> UnigenError:
        return UnigenError([self.locate(d) for d in diags], exit_code)


def load_yaml(text: str, file: str = "<spec>") -> tuple[Any, SourceMap]:
    smap = SourceMap(file)
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise UnigenError([Diagnostic("Y003", "the spec file is empty; expected a mapping with `unigen: 1`, `name`, `data`, `variables`, `networks` and `edges`.", hint="start from `unigen new --family vae` or a file in specs/.", file=file, line=1, col=1)])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise UnigenError([Diagnostic("Y001", f"YAML syntax error: {what}.", hint="check indentation, colons and brackets near this line.", file=file, line=line, col=col)]) from None
    except yaml.YAMLError as exc:
        raise UnigenError([Diagnostic("Y001", f"YAML syntax error: {exc}.", file=file, line=1, col=1)]) from None
    finally:
        loader.dispose()
    if node is None:
        raise UnigenError([Diagnostic("Y003", "the spec file holds no document.", file=file, line=1, col=1)])
    errors: list[Diagnostic] = []
    data = _convert(node, (), loader, smap, errors)
    if errors:
        raise UnigenError(errors)
    return data, smap


def _convert(node: yaml.Node, path: Path, loader: _Loader, smap: SourceMap, errors: list[Diagnostic]) -> Any:
    smap.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            try:
                key = loader.construct_object(key_node, deep=True)
            except yaml.YAMLError as exc:
                errors.append(_at(key_node, "Y001", f"bad key: {exc}", smap.file))
                continue
            if not isinstance(key, (str, int, float, bool)) or key is None:
                errors.append(_at(key_node, "Y001", f"a key must be a plain scalar, not {type(key).__name__}.", smap.file))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                first = smap.positions.get(path + (key,), (0, 0))
                errors.append(_at(key_node, "Y002", f"duplicate key `{key}` (first defined at line {first[0]}); expected each key once.", smap.file, "remove or rename one of them."))
                continue
            smap.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, path + (key,), loader, smap, errors)
            smap.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), loader, smap, errors) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        errors.append(_at(node, "Y001", f"bad value: {exc}", smap.file))
        return None


def _at(node: yaml.Node, code: str, message: str, file: str, hint: str = "") -> Diagnostic:
    return Diagnostic(code, message, (), hint, file, node.start_mark.line + 1, node.start_mark.column + 1)
