"""One error type for everything a user can get wrong, carrying located diagnostics.

Format of one diagnostic (house convention)::

    file:line:col: dotted.path: CODE what is wrong; what was expected. Hint: the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Path = tuple[str | int, ...]


# Stable codes. The README lists them; a test keeps this table and the docs in step.
CODES: dict[str, str] = {
    "Y001": "YAML syntax error",
    "Y002": "duplicate key in a mapping",
    "Y003": "empty spec file",
    "Y004": "spec file cannot be read",
    "S001": "unknown key",
    "S002": "invalid value or type",
    "S003": "missing required key",
    "S004": "bad command-line override",
    "S005": "bad command-line argument (an unknown option, an option's missing or ill-typed value)",
    "G001": "unknown name",
    "G002": "network used by no edge",
    "G003": "cycle in the generative edges",
    "G004": "latent root without a prior",
    "G005": "observed variable with neither data nor a generative parent",
    "G006": "inference edge that approximates no posterior",
    "G007": "adversarial sides of different shapes",
    "G008": "adversarial link with nothing trainable behind either side",
    "G009": "phase that updates nothing or has no terms",
    "G010": "phase whose terms cannot reach a network it updates",
    "G011": "trainable network that no phase updates",
    "G012": "shape mismatch along an edge",
    "G013": "a duplicate: two edges of one kind into one variable, a name used twice, a network updated twice in a phase",
    "G014": "term needs something the graph does not provide",
    "G015": "ambiguous or wrong term target",
    "G016": "bad options for a registered kind",
    "G017": "the latent an adversarial link also tells apart is no categorical root behind the fake side",
    "G020": "bad mask of a partially observed variable",
    "G021": "a density its network evaluates on a network that does not fit it (not causal, not invertible)",
    "G022": "an undirected factor without the sampler it needs, or a sampler that cannot fill a trace",
    "G023": "a network port that does not exist, or a network with ports used without one",
    "P001": "plugin failed to load",
    "P002": "kind registered twice",
    "P003": "plugin built for another plugin-API version",
    "P004": "no plugins registered (unigen is not installed)",
    "P005": "plugin implements a hook that no hookspec declares",
    "P006": "registered object is not of its kind",
    "D001": "data cannot be loaded",
    "D010": "data file or folder missing",
    "D011": "malformed data file (IDX magic, sizes, labels)",
    "D012": "image folder without images",
    "D013": "image cannot be read, or Pillow is missing",
    "R001": "non-finite loss",
    "R002": "run directory problem",
    "R003": "training stopped by a signal (SIGINT/SIGTERM); a checkpoint was saved",
    "R004": "a term failed inside a training step",
    "R005": "evaluation or sample drawing failed after training (the run is kept)",
    "C001": "checkpoint cannot be used",
    "E001": "run directory cannot be evaluated",
    "E002": "no such checkpoint to evaluate (`best` or a file)",
    "E003": "unknown metric, bad metric option, or no metric applies",
    "E004": "bad sampling request (nothing to sample, bad `--traverse`/`--interpolate`, output not writable)",
    "E005": "metrics.csv missing, empty or unreadable",
    "E006": "`train.best.metric` not among the evaluated metrics (a warning)",
    "X001": "batch size does not split evenly over the processes",
    "X002": "a training process failed",
    "X003": "network copies differ between processes",
    "X004": "bad distributed launch (--nproc-per-node, RANK/WORLD_SIZE, GPUs per node)",
    "X005": "precision not supported on this device",
    "X006": "SyncBatchNorm without CUDA",
    "U001": "Graphviz is missing or failed to render a drawing",
    "U002": "unknown output format, or a drawing that cannot be written (a fifo, a directory, a full disk)",
    "U003": "output file exists",
    "U004": "tracker not available (a package is missing or too old)",
    "U005": "sweep launcher not available (`--launcher submitit` without the submitit package, or a submitit executor this machine lacks)",
    "U006": "shell completion not available (the shtab package is missing)",
    "B001": "benchmark `--check` with nothing to check against (the table's .json missing, unreadable or another script's)",
    "B002": "benchmark `--check`: a value moved beyond its stated tolerance",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    path: Path = ()
    hint: str = ""
    file: str = ""
    line: int = 0  # 1-based; 0 when unknown
    col: int = 0

    def located(self, file: str, line: int, col: int) -> "Diagnostic":
        return Diagnostic(self.code, self.message, self.path, self.hint, file, line, col)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file + (f":{self.line}:{self.col}" if self.line else ""))
        if self.path:
            where.append(dotted(self.path))
        text = f"{self.code} {self.message}"
        if self.hint:
            text += f" Hint: {self.hint}"
        return ": ".join(where + [text])


@dataclass
class UnigenError(Exception):
    """Raised with every diagnostic found, never just the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    exit_code: int = 2

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)

    @classmethod
    def one(cls, code: str, message: str, path: Path = (), hint: str = "", exit_code: int = 2) -> "UnigenError":
        return cls([Diagnostic(code, message, path, hint)], exit_code)


def dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choices, or listing them all when nothing is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if not options:
        return "nothing of this kind is registered."
    return "choose one of: " + ", ".join(f"`{o}`" for o in options) + "."


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message, stripped ("" where it has none); one longer
    than `limit` characters is cut to `limit`, its last three characters "..."."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def exception_text(exc: BaseException, limit: int | None = None) -> str:
    """`TypeName: first line of the message` (see `first_line`)."""
    return f"{type(exc).__name__}: {first_line(exc, limit)}"
