"""Authoring commands: `draw`, `new`, `docs`. Kept apart from `cli.py`, which wires them in."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def _registry() -> Any:
    from .cli import _registry

    return _registry()


def cmd_draw(args: argparse.Namespace) -> int:
    from .draw import draw
    from .graph import build_graph
    from .run import compile_file

    compiled = compile_file(args.spec, args.overrides, _registry())  # only a valid spec is drawn
    engine = draw(build_graph(compiled.program.spec), Path(args.output), args.engine)
    print(f"wrote {args.output} ({engine})")
    return 0


def add_commands(sub: Any, spec_cmd: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    d = spec_cmd("draw", cmd_draw, "draw the spec's graphical model (solid: generative, dashed: inference, hollow head: deterministic, red: adversarial)")
    d.add_argument("-o", "--output", required=True, metavar="FILE", help="output file: .svg, .png, .pdf, or .dot (Graphviz source)")
    d.add_argument("--engine", choices=["auto", "graphviz", "matplotlib"], default="auto", help="renderer: Graphviz `dot` when installed (auto), else matplotlib")


__all__ = ["add_commands", "sys"]
