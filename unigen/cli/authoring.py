"""Authoring commands: `draw`, `new`, `docs`; `commands.py` wires them into the parser."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unigen.cli import common
from unigen.cli.sweep import add_sweep_commands
from unigen.errors import UnigenError

Handler = Callable[[argparse.Namespace], int]


def cmd_draw(args: argparse.Namespace) -> int:
    from unigen.compiler.compiler import compile_file
    from unigen.tools.draw import draw

    compiled = compile_file(args.spec, args.overrides, common.registry())  # only a valid spec is drawn
    program = compiled.program
    engine = draw(program.graph, Path(args.output), args.engine, {e.name: e.note for e in program.links()})
    print(f"wrote {args.output} ({engine})")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from unigen.spec.schema import find_schema, schema_reference
    from unigen.tools.starter import starter_spec

    out = Path(args.output) if args.output else None
    name = args.name or (out.stem if out else None)
    # The modeline names the nearest unigen.schema.json at or above the spec's folder (else the
    # one `unigen schema -o unigen.schema.json` would write here), by its path from that folder.
    folder = out.parent if out else Path.cwd()
    schema = find_schema(folder)
    text = starter_spec(args.family, common.registry(), name, schema_reference(schema, folder))
    if out is None:
        print(text, end="")
        return 0
    if out.exists() and not args.force:
        raise UnigenError.one("U003", f"`{out}` exists; unigen does not write over it.", (), "choose another `-o`, or add `--force`.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}; next: `unigen compile-and-train {out} --dry-run`", file=sys.stderr)
    if not schema.is_file():
        shown = schema_reference(schema, Path.cwd())
        print(f"its first lines point editors at {shown}, which does not exist yet: `unigen schema -o {shown}` writes it", file=sys.stderr)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from unigen.tools.docgen import DOCS

    text = DOCS[args.what]()
    if args.check:
        path = Path(args.output or f"docs/{args.what}.md")
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date; regenerate with `unigen docs {args.what} -o {path}`", file=sys.stderr)
            return 1
        print(f"{path} is current")
        return 0
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def add_commands(sub: Any, spec_cmd: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    d = spec_cmd("draw", cmd_draw, "draw the spec's graphical model (solid: generative, dashed: inference, hollow head: deterministic, red: adversarial)")
    d.add_argument("-o", "--output", required=True, metavar="FILE", help="output file: .svg, .png, .pdf, or .dot (Graphviz source)")
    d.add_argument("--engine", choices=["auto", "graphviz", "matplotlib"], default="auto", help="renderer: Graphviz `dot` when installed (auto), else matplotlib")
    n = sub.add_parser("new", help="write a commented starter spec from a family's defaults", description="write a commented starter spec from a family's defaults (stdout, or -o FILE)")
    n.add_argument("--family", required=True, help="a registered family (`unigen plugins` lists them)")
    n.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    n.add_argument("--name", help="the spec's `name` (default: the output file's stem, or my-FAMILY)")
    n.add_argument("--force", action="store_true", help="write over an existing file")
    n.set_defaults(func=cmd_new)
    dc = sub.add_parser(
        "docs",
        help="generate the reference docs: plugin hooks, the spec keys, or the registered kinds and their options",
        description="generate docs/hooks.md (from unigen/api/hookspecs.py), docs/spec.md (from the spec models) or docs/kinds.md (every kind of unigen's own plugins with its options)",
    )
    dc.add_argument("what", choices=["hooks", "spec", "kinds"], help="which reference: hooks (plugin hooks), spec (spec keys) or kinds (every built-in kind with its options)")
    dc.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    dc.add_argument("--check", action="store_true", help="exit 1 when FILE (default docs/WHAT.md) differs from what would be generated")
    dc.set_defaults(func=cmd_docs)
    add_sweep_commands(sub, spec_cmd)


__all__ = ["add_commands"]
