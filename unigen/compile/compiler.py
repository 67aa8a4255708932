"""`compile_file`: a spec file (and overrides) in, the validated spec and its `Program` out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unigen.api.registry import Registry, default_registry
from unigen.compile.program import Program, compile_program
from unigen.spec.load import load_spec
from unigen.spec.models import spec_to_dict


@dataclass
class Compiled:
    program: Program
    given: dict[str, Any]
    resolved: dict[str, Any]
    path: Path


def compile_file(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None) -> Compiled:
    registry = registry or default_registry()
    spec, smap, given = load_spec(path, overrides, registry)
    program = compile_program(spec, registry, smap)
    return Compiled(program, given, spec_to_dict(spec), Path(path))
