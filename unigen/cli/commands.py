"""The `unigen` command line. Every user error exits non-zero with located messages."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from unigen.cli import common
from unigen.cli.authoring import add_commands
from unigen.cli.completion import add_completion_command
from unigen.errors import UnigenError

EXIT_USAGE = 2


def cmd_validate(args: argparse.Namespace) -> int:
    """Each spec in turn (the overrides apply to every one); every file's problems are printed,
    and the exit code is that of the first that failed."""
    from unigen.compiler.compiler import compile_file

    code = 0
    for spec in [args.spec, *args.more_specs]:
        try:
            p = compile_file(spec, args.overrides, common.registry()).program
        except UnigenError as exc:
            if not args.more_specs:
                raise
            n = len(exc.diagnostics)
            print(f"{exc}\n{spec}: {n} problem{'s' if n != 1 else ''} found.", file=sys.stderr)
            code = code or exc.exit_code
            continue
        print(f"{spec}: ok — {len(p.variables)} variables, {len(p.edges)} edges, {len(p.networks)} networks, {len(p.phases)} phases")
    return code


def cmd_compile(args: argparse.Namespace) -> int:
    from unigen.compiler.compiler import compile_file

    print(compile_file(args.spec, args.overrides, common.registry()).program, end="")
    return 0


def cmd_show_config(args: argparse.Namespace) -> int:
    from unigen.compiler.compiler import compile_file
    from unigen.runs.rundir import dump_yaml

    print(dump_yaml(compile_file(args.spec, args.overrides, common.registry()).resolved), end="")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.dry_run:
        from unigen.runs.dryrun import dry_run

        return dry_run(args.spec, args.overrides, common.registry(), args.device, sys.stdout)
    from unigen.runs.driver import train_run
    from unigen.training.distributed import env_world

    run = train_run(args.spec, args.overrides, out=args.out, steps=args.steps, device=args.device, registry=common.registry(), quiet=args.quiet, resume=args.resume, nproc_per_node=args.nproc_per_node, track=_tracks(args))
    world = env_world()
    if world is not None and not world.main:
        return 0  # under torchrun only rank 0 writes summary.json and reports the run
    summary = json.loads((run / "summary.json").read_text())
    print(f"run written to {run}")
    for k, v in summary["metrics"].items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


def _tracks(args: argparse.Namespace) -> list[str]:
    return list(args.track or []) + (["tensorboard"] if args.tensorboard else [])


def cmd_schema(args: argparse.Namespace) -> int:
    from unigen.spec.schema import spec_schema, written_hint

    text = json.dumps(spec_schema(common.registry()), indent=2) + "\n"
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text, encoding="utf-8")
        print(written_hint(Path(args.output)), file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from unigen.api.registry import KINDS

    reg = common.registry(clashes_ok=True)  # the listing is where a clash is looked into
    print("plugins:")
    for p in reg.plugins:
        status = "ok" if not p.error else f"FAILED: {p.error}"
        print(f"  {p.name:<16} {p.dist} {p.version}  {status}")
    for kind in KINDS:
        entries = reg.all(kind)
        if entries:
            print(f"{kind}:")
            for e in entries:
                doc = (getattr(e.obj, "doc", "") or "").strip().splitlines()
                print(f"  {e.name:<20} [{e.plugin}] {doc[0] if doc else ''}")
    return 1 if args.strict and (any(p.error for p in reg.plugins) or any(d.code == "P002" for d in reg.problems)) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from unigen.runs.checkpoints import export_weights

    out, state, tensors = export_weights(args.run, args.output)
    print(f"wrote {len(tensors)} tensors of step {state['step']} to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from unigen.runs.evaluate import evaluate_run, format_table, to_json

    result = evaluate_run(args.run, args.checkpoint, args.metric, args.option, common.registry(), args.device)
    print(to_json(result) if args.json else format_table(result))
    for text in result["errors"]:
        print(f"error: R005: {text}. Hint: fix or update the plugin that registers it, or leave it out with `--metric`.", file=sys.stderr)
    return 1 if result["errors"] else 0


def cmd_sample(args: argparse.Namespace) -> int:
    from unigen.tools.plots import sample_run

    out = sample_run(args.run, args.n, args.output, args.seed, args.checkpoint, args.traverse, args.interpolate, common.registry(), args.device, reconstruct=args.reconstruct)
    print(f"wrote {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from unigen.tools.plots import plot_runs

    plotted = plot_runs(args.run, args.output, common.registry())
    for path in plotted.paths:
        print(f"wrote {path}")
    if plotted.note:
        print(plotted.note)
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors coded (S005) as every other error is; the subcommands'
    parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: S005 {message.rstrip('.')}. Hint: see `{self.prog} --help`.\n")


def _steps(text: str) -> int:
    """`--steps N`: a whole number greater than 0, refused (S005) on the command line itself."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected a whole number of steps, e.g. `--steps 100`") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"invalid value {n}; expected a whole number greater than 0")
    return n


def _add_picture_commands(sub: argparse._SubParsersAction) -> None:
    """`sample` and `plot`: pictures of runs."""
    sa = sub.add_parser("sample", help="draw samples of a run as a PNG: an image grid, or 2-D points over the true density; reconstructions, traversals and interpolations of a latent")
    sa.add_argument("run", help="run directory")
    sa.add_argument("-n", type=int, default=None, help="number of samples (default: as many as the run's pictures in training show, 64 for images; data rows with --reconstruct)")
    sa.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the PNG to write")
    sa.add_argument("--seed", type=int, default=0, help="seed of the drawn noise (default 0): the same seed draws the same picture")
    sa.add_argument("--checkpoint", default="last", metavar="last|best|PATH", help="which checkpoint (default: last)")
    sa.add_argument("--traverse", metavar="VAR[:DIM]", help="vary one latent root along each row (one dimension, or each in turn; every value of a categorical code), the rest fixed; the columns are labelled with the values")
    sa.add_argument("--interpolate", metavar="VAR", help="move one latent root on a straight line between two draws along each row, the rest fixed")
    sa.add_argument("--reconstruct", action="store_true", help="test rows of the data beside their reconstructions (a model with an encoder: an inference edge from the data)")
    sa.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="where the model runs (default: auto, as training's default: CUDA when there is a GPU, else the CPU)")
    sa.set_defaults(func=cmd_sample)
    pt = sub.add_parser("plot", help="draw runs' loss and metric curves from metrics.csv as PNG (several runs: overlaid)")
    pt.add_argument("run", nargs="+", help="run directory; several are overlaid, a colour each")
    pt.add_argument("-o", "--output", metavar="DIR", help="output directory (default RUN/plots for one run; needed for several)")
    pt.set_defaults(func=cmd_plot)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="unigen", description="Deep generative models as graphical-model specs, compiled into wake/sleep-style training phases.")
    parser.add_argument("--version", action="version", version=f"unigen {_version()}", help="print unigen's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def spec_cmd(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("spec", help="spec file (YAML)")
        p.add_argument("overrides", nargs="*", help="overrides in Hydra's grammar, anywhere on the line: key=value (a mapping merges), +key=value (add), ++key=value (add or set), ~key (delete), e.g. train.steps=200")
        p.set_defaults(func=func)
        return p

    spec_cmd("validate", cmd_validate, "check specs and report every problem at once (several files: each in turn, the same overrides for all)")
    spec_cmd("compile", cmd_compile, "print the program a spec compiles to")
    spec_cmd("show-config", cmd_show_config, "print the resolved spec (family defaults and overrides applied)")
    t = spec_cmd("compile-and-train", cmd_train, "compile a spec and train it, writing a run directory")
    t.add_argument("--out", help="run directory (default runs/<name>-<time>)")
    t.add_argument("--steps", type=_steps, help="override train.steps")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override train.device")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files to RUN/tensorboard (needs `tensorboard`)")
    t.add_argument("--track", action="append", metavar="NAME", help="also report to this registered tracker (repeatable); `unigen plugins` lists them")
    t.add_argument("--dry-run", action="store_true", help="build everything and run one batch of every phase; write nothing")
    t.add_argument("--nproc-per-node", type=int, metavar="N", help="train on N local processes with torch.distributed (gloo on the CPU, NCCL with one GPU each); under torchrun leave it out")
    t.add_argument("--resume", metavar="auto|PATH", help="continue a run: `auto` continues the run in --out from its newest readable checkpoint; PATH is a checkpoint file or a run directory")
    add_commands(sub, spec_cmd)
    s = sub.add_parser("schema", help="print the JSON Schema (draft-07) of spec files, for editors")
    s.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of stdout")
    s.set_defaults(func=cmd_schema)
    pl = sub.add_parser("plugins", help="list installed plugins, what they register, and load errors")
    pl.add_argument("--strict", action="store_true", help="exit 1 when a plugin failed to load")
    pl.set_defaults(func=cmd_plugins)
    ex = sub.add_parser("export", help="write the networks' weights of a run's newest checkpoint as safetensors", description="write the networks' weights of a run's newest checkpoint (or of a checkpoint file) as safetensors")
    ex.add_argument("run", help="run directory (or a checkpoint file)")
    ex.add_argument("-o", "--output", metavar="FILE.safetensors", help="output file (default RUN/weights.safetensors)")
    ex.set_defaults(func=cmd_export)
    ev = sub.add_parser("evaluate", help="compute every metric that applies to a run's checkpoint (including slow offline ones)")
    ev.add_argument("run", help="run directory")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.add_argument("--checkpoint", default="last", metavar="last|best|PATH", help="which checkpoint (default: last)")
    ev.add_argument("--metric", action="append", metavar="NAME", help="compute only this registered metric (repeatable)")
    ev.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE", help="a metric's option, e.g. iwae.k=1000 (repeatable)")
    ev.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="where the model runs (default: auto, as training's default: CUDA when there is a GPU, else the CPU)")
    ev.set_defaults(func=cmd_evaluate)
    _add_picture_commands(sub)
    add_completion_command(sub, parser)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with `dotted.key=value` overrides accepted anywhere after the spec
    (`compile-and-train SPEC --steps 3 train.seed=1`), as Hydra users expect: whatever is left
    that is no option is an override (and one without `=` is S004, as the others' are)."""
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if not a.startswith("-")] if hasattr(args, "overrides") else [a for a in extra if "=" in a and not a.startswith("-")]
    rest = [a for a in extra if a not in overrides]
    if rest or (overrides and not hasattr(args, "overrides")):
        parser.error("unrecognized arguments: " + " ".join(rest or overrides))
    if hasattr(args, "overrides"):
        # Before the spec too (`compile train.steps=5 spec.yaml`): the spec is the first word
        # that is no override; `validate` takes every word that names a YAML file or a file.
        words = [args.spec, *args.overrides, *overrides]
        specs = [i for i, w in enumerate(words) if not _is_override(w)]
        first = specs[0] if specs else 0
        more = [i for i in specs[1:] if args.command == "validate" and (words[i].endswith((".yaml", ".yml")) or os.path.isfile(words[i]))]
        args.spec, args.more_specs = words[first], [words[i] for i in more]
        args.overrides = [w for i, w in enumerate(words) if i != first and i not in more]
    return args


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unigen")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _is_override(word: str) -> bool:
    """A command-line word that is an override (`key=value`, `+key=value`, `~key`), not a spec."""
    return "=" in word or word.startswith(("~", "+"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    try:
        return int(args.func(args))
    except UnigenError as exc:
        if exc.__cause__ is not None and os.environ.get("UNIGEN_TRACEBACK", "") not in ("", "0"):
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(str(exc), file=sys.stderr)
        n = len(exc.diagnostics)
        if n > 1:
            print(f"{n} problems found.", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`unigen schema | head`): stop quietly, as `cat` does. Python
        # would otherwise complain again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured)
            pass
        return 128 + 13  # as if killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
