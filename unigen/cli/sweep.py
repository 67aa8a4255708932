"""`unigen sweep` and `unigen compare`; `authoring.add_commands` wires them into the parser."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from unigen.cli import common
from unigen.errors import UnigenError

Handler = Callable[[argparse.Namespace], int]


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected a whole number, e.g. 2") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"invalid value {n}; expected a whole number greater than 0")
    return n


def split_seeds(words: list[str] | None) -> tuple[list[int] | None, list[str]]:
    """`--seeds 0 1 2` and the overrides it swallowed (`--seeds 0 1 lr=1,2`): the seeds, and
    those words given back as overrides. A word that is neither is S005."""
    if words is None:
        return None, []
    seeds, overrides = [], []
    for w in words:
        if re.fullmatch(r"\d+", w):
            seeds.append(int(w))
        elif "=" in w or w.startswith(("~", "+")):
            overrides.append(w)
        else:
            raise UnigenError.one("S005", f"`--seeds {w}`: `{w}` is not a whole number.", (), "give the seeds as whole numbers from 0, e.g. `--seeds 0 1 2`.")
    if not seeds:
        raise UnigenError.one("S005", "`--seeds` names no seed.", (), "give the seeds as whole numbers from 0, e.g. `--seeds 0 1 2`.")
    return seeds, overrides


def cmd_sweep(args: argparse.Namespace) -> int:
    from unigen.runs.sweep import LocalProcesses, SubmititJobs, SubmititOptions, import_submitit, plan_sweep, run_sweep, sweep_markdown

    seeds, more = split_seeds(args.seeds)
    if args.launcher == "submitit":
        import_submitit()  # a missing submitit stops the sweep before anything is compiled
    sweep = plan_sweep(args.spec, [*args.overrides, *more], seeds, args.dir, common.registry())
    jobs = args.jobs or (1 if args.launcher == "local" else len(sweep.runs))
    if args.launcher == "submitit":
        options = SubmititOptions(args.cluster, args.submitit_folder, args.time, args.partition, args.gpus_per_node, args.cpus_per_task)
        launch: Any = SubmititJobs(sweep, options, jobs)
        sweep.launcher, sweep.resume = f"submitit ({launch.cluster})", True
    else:
        launch = LocalProcesses(jobs)
    code = run_sweep(sweep, launch, jobs, launch.stop)
    print(sweep_markdown(sweep), end="")
    print(f"wrote {sweep.directory / 'sweep.md'} and sweep.json; plot it with `unigen compare {sweep.directory} -o compare.png`", file=sys.stderr)
    failed = [r for r in sweep.runs if r.status == "failed"]
    if failed:
        print(f"error: X002 {len(failed)} of {len(sweep.runs)} sweep runs failed: {', '.join(r.name for r in failed)}. Hint: read their logs in `{sweep.directory / 'logs'}`; the other runs are in the table.", file=sys.stderr)
    if code == 130:
        print(f"interrupted: sweep.json in {sweep.directory} says which runs finished", file=sys.stderr)
    return code


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unigen.tools.compare import compare_plot, compare_table, read_groups

    if args.output and Path(args.output).suffix.lower() != ".png":
        raise UnigenError.one("U002", f"`-o {args.output}`: compare draws PNG files only.", (), "give a file name ending in `.png`, e.g. `-o compare.png`.")
    groups = read_groups(args.runs)
    text, metrics = compare_table(groups, args.metric)
    print(text, end="")
    if args.output:
        title = "compare " + " ".join(Path(p).name for p in args.runs)
        print(f"wrote {compare_plot(groups, metrics if args.metric else None, Path(args.output), title if len(title) <= 100 else title[:97] + '...')}", file=sys.stderr)
    return 0


def add_sweep_commands(sub: Any, spec_cmd: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    s = spec_cmd("sweep", cmd_sweep, "train a spec at every point of a grid (Hydra's multirun grammar: `key=a,b,c` is an axis, the points are the axes' product), for each seed")
    s.add_argument("--seeds", nargs="+", metavar="S", help="the seeds of every point (default: a `train.seed=...` override, else the spec's seed)")
    s.add_argument("--dir", metavar="DIR", help="sweep directory, new or empty (default runs/sweep-<spec stem>, then -2, -3, ...)")
    s.add_argument("--jobs", type=_positive, metavar="N", help="runs at a time (default: 1 locally, every run with submitit)")
    s.add_argument("--launcher", choices=["local", "submitit"], default="local", help="local processes (default), or a submitit job per run (`pip install submitit`): Slurm on a cluster, else submitit's local executor")
    g = s.add_argument_group("submitit (with --launcher submitit)")
    g.add_argument("--cluster", choices=["auto", "slurm", "local"], default="auto", help="submitit's executor (default auto: Slurm where `srun` is on PATH, else local)")
    g.add_argument("--partition", metavar="NAME", help="the Slurm partition")
    g.add_argument("--time", type=_positive, default=60, metavar="MIN", help="a job's time limit in minutes (default 60); a job that reaches it saves a checkpoint and is requeued, continuing its run")
    g.add_argument("--gpus-per-node", type=_positive, metavar="N", help="GPUs of each job")
    g.add_argument("--cpus-per-task", type=_positive, metavar="N", help="CPUs of each job")
    g.add_argument("--submitit-folder", metavar="DIR", help="submitit's job files and logs (default SWEEP/submitit)")
    c = sub.add_parser("compare", help="the final metrics of runs and sweeps per point (median and range over the seeds), and their metric curves overlaid",
                       description="print a markdown table of the final metrics per point (runs whose resolved specs differ only in train.seed; a sweep's own points), and with -o draw the metric curves of every run's metrics.csv, coloured by point")
    c.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP", help="run directories and sweep directories")
    c.add_argument("-o", "--output", metavar="FILE.png", help="draw the curves into this PNG file")
    c.add_argument("--metric", action="extend", nargs="+", metavar="NAME", help="only these metrics (the table's final metrics, the plot's metrics.csv columns; repeatable)")
    c.set_defaults(func=cmd_compare)


__all__ = ["add_sweep_commands"]
