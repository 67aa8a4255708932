"""`unigen completion SHELL`: a shell completion script generated from the command-line parser
itself (by shtab), so it never falls behind the commands and options."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from unigen.errors import UnigenError

SHELLS = ("bash", "zsh", "tcsh")
HOW = {
    "bash": "unigen completion bash > ~/.local/share/bash-completion/completions/unigen   (or `eval \"$(unigen completion bash)\"` in ~/.bashrc)",
    "zsh": "unigen completion zsh > ~/.zfunc/_unigen   (with `fpath+=~/.zfunc; autoload -U compinit && compinit` in ~/.zshrc)",
    "tcsh": "unigen completion tcsh > ~/.unigen.tcsh   (and `source ~/.unigen.tcsh` in ~/.tcshrc)",
}
# What a positional argument of these names completes to (shtab's file and directory completers).
FILES = {"spec", "overrides"}
DIRS = {"run"}


def add_completion_command(sub: Any, root: argparse.ArgumentParser) -> None:
    p = sub.add_parser("completion", help="print a shell completion script for unigen's commands and options",
                       description="print a shell completion script generated from unigen's own parser; install it with:\n  " + "\n  ".join(HOW.values()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=lambda args: cmd_completion(args, root))


def cmd_completion(args: argparse.Namespace, root: argparse.ArgumentParser) -> int:
    try:
        import shtab
    except ImportError:
        raise UnigenError("U006 `unigen completion` needs the package shtab. Hint: `pip install shtab` (it is among unigen's dependencies: reinstall unigen).", 2) from None
    mark(root, shtab)
    sys.stdout.write(shtab.complete(root, shell=args.shell))
    return 0


def mark(parser: argparse.ArgumentParser, shtab: Any) -> None:
    """Spec arguments complete to files, run arguments to directories, in every subcommand;
    output options to files."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                mark(child, shtab)
        elif action.dest in FILES or action.dest == "output":
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.dest in DIRS or action.dest == "out":
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
