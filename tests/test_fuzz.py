"""Property-based fuzzing of spec files: whatever a file holds, unigen answers with a coded error
or works, and never with another exception or a traceback.

The strategies start from the shipped specs `vae-digits.yaml` and `gan-ring.yaml` and mutate
them: types, names, shapes, structure (at the level of the loaded document) and encodings (at
the level of the file's bytes). Each case is checked with `unigen validate`; a case that
validates is also compiled into a `Trainer` that runs one training step, which must succeed or
raise a `UnigenError` with a code (or `NonFiniteLoss`, which `compile-and-train` reports as
R001). A few plausible variants go through the whole `compile-and-train` command. Below the
properties, each crash the fuzzer found is pinned as a regression test.

Runs are derandomized (the same cases every time) and sized to stay under a minute on two
busy CPU cores. `UNIGEN_FUZZ_EXAMPLES=N` raises the number of cases per test for a longer hunt.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unigen import hookimpl
from unigen.api.kinds import Bound, Term
from unigen.api.registry import load_registry
from unigen.cli.commands import main
from unigen.compiler.compiler import compile_file
from unigen.errors import CODES, UnigenError
from unigen.runs.checkpoints import load_checkpoint
from unigen.spec.source import load_yaml
from unigen.training import networks as runtime
from unigen.training.trainer import NonFiniteLoss, Trainer

BASES = {name: (ROOT / "specs" / f"{name}.yaml").read_text(encoding="utf-8") for name in ("vae-digits", "gan-ring")}
DOCS = {name: load_yaml(text)[0] for name, text in BASES.items()}
CODE_LINE = re.compile(r"(^|: )[A-Z]\d{3} ", re.M)
EXAMPLES = int(os.environ.get("UNIGEN_FUZZ_EXAMPLES", "0"))
STATS: Counter[str] = Counter()  # outcomes by kind; printed when this module's tests end


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=EXAMPLES or n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True, scope="module")
def small_and_quick(request):
    """One torch thread, and networks held to 1 GiB of training memory: a mutation that
    asks for an enormous network gets the coded refusal instead of the machine's memory.
    At the end, the number of cases tried and their outcomes go to the terminal."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setattr(runtime, "memory_bytes", lambda device: 2**30)
    yield
    mp.undo()
    torch.set_num_threads(old)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and (STATS["cases"] or STATS["override cases"] or STATS["command line cases"]):
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(STATS.items()) if k not in ("cases", "documents", "encodings", "override cases", "command line cases"))
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(f"\nspec fuzzing: {STATS['cases']} cases tried, {STATS['override cases']} override cases, {STATS['command line cases']} command lines ({outcomes})")


# ------------------------------------------------------------------- strategies

# Integers stay small or become absurd: a mid-sized number (a hidden layer of 10^7) is a
# valid request for gigabytes, which is no bug and no use on a shared test machine.
INTS = st.one_of(st.integers(-3, 300), st.sampled_from([0, -1, 10**12, 2**63, -(2**63), 10**30]))
FLOATS = st.one_of(st.floats(-300, 300), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-320, 1e12]))
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "x", "z", "1x", "x -> x", "->", "a,b -> c", "p.x", "q.z", "@", "elbo@", "é", "\u202e", "null", "~"]))
SCALARS = st.one_of(INTS, FLOATS, TEXT, st.booleans(), st.none())
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.integers(-2, 64), TEXT), max_size=4),
    st.dictionaries(TEXT, SCALARS, max_size=3),
    st.lists(st.dictionaries(TEXT, SCALARS, max_size=2), max_size=2),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value of a document (the root left out)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


def get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def names_in(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    return list(value) if isinstance(value, dict) else []


@st.composite
def retype(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Replace any value with one of another type: int, str, list, dict, None, nan, huge."""
    path = draw(st.sampled_from(paths(doc)))
    parent = get(doc, path[:-1])
    parent[path[-1]] = draw(VALUES)
    return doc


@st.composite
def rename(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Rename a variable or network (its uses keep the old name), or make a reference unknown."""
    new = draw(st.sampled_from(["x2", "generater", "enc", "1bad", "a-b", "", "z", "x", "encoder", "discriminator", "__init__", "näme"]))
    kind = draw(st.sampled_from(["variables", "networks", "reference", "term"]))
    if kind in ("variables", "networks") and names_in(doc, kind):
        old = draw(st.sampled_from(names_in(doc, kind)))
        doc[kind] = {(new if k == old else k): v for k, v in doc[kind].items()}
    elif kind == "reference" and isinstance(doc.get("edges"), list) and doc["edges"]:
        edge = doc["edges"][draw(st.integers(0, len(doc["edges"]) - 1))]
        if not isinstance(edge, dict):
            return doc
        key = draw(st.sampled_from(["net", "dist", "objective", "generative", "inference", "adversarial", "name"]))
        edge[key] = draw(st.sampled_from([new, f"{new} -> x", f"z -> {new}", f"x, {new} -> z", f"[{new}]"]))
    elif isinstance(doc.get("phases"), list) and doc["phases"]:
        phase = doc["phases"][draw(st.integers(0, len(doc["phases"]) - 1))]
        if not isinstance(phase, dict):
            return doc
        where = draw(st.sampled_from(["update", "terms", "name", "optim"]))
        if where == "optim":
            phase["optim"] = {"kind": new}
        elif where == "name":
            phase["name"] = new
        else:
            phase[where] = [draw(st.sampled_from([new, f"{new}@p_x", "elbo@" + new, "adversarial.d@" + new, "adversarial.g", "elbo", "adversarial.d"]))]
    return doc


@st.composite
def reshape(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """A variable's shape becomes zero, negative, empty, longer, nested or huge."""
    names = names_in(doc, "variables")
    if not names:
        return doc
    var = doc["variables"][draw(st.sampled_from(names))]
    shape = draw(st.one_of(
        st.lists(st.integers(-2, 70), max_size=4),
        st.sampled_from([[0], [-1], [], [2, 3], [1, 8, 8], [64, 1], [1, 1, 1, 1, 1], [10**12], [2**63], [[2]], ["2"], [2.0], [2.5], 2, "2", None, [True]]),
    ))
    if isinstance(var, dict):
        var["shape"] = shape
    return doc


@st.composite
def restructure(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Drop or copy keys, edges and phases; swap edge kinds; add cycles; empty the lists."""
    what = draw(st.sampled_from(["drop", "copy", "drop_edge", "drop_phase", "swap_kind", "cycle", "self_loop", "copy_edge", "copy_phase", "empty"]))
    edges, phases = (doc.get(k) if isinstance(doc.get(k), list) else None for k in ("edges", "phases"))
    if what == "drop":
        path = draw(st.sampled_from(paths(doc)))
        del get(doc, path[:-1])[path[-1]]
    elif what == "copy":
        path = draw(st.sampled_from(paths(doc)))
        parent = get(doc, path[:-1])
        if isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[f"{path[-1]}_copy"] = copy.deepcopy(parent[path[-1]])
    elif what == "drop_edge" and edges:
        del edges[draw(st.integers(0, len(edges) - 1))]
    elif what == "drop_phase" and phases:
        del phases[draw(st.integers(0, len(phases) - 1))]
    elif what == "swap_kind" and edges:
        edge = edges[draw(st.integers(0, len(edges) - 1))]
        old = next((k for k in ("generative", "inference", "adversarial") if k in edge), None) if isinstance(edge, dict) else None
        new = draw(st.sampled_from(["generative", "inference", "adversarial"]))
        if old is not None:
            value = edge.pop(old)
            edge[new] = value if new != "adversarial" or "->" not in str(value) else str(value).split("->")[-1].strip()
            if draw(st.booleans()):  # also move the kind-specific keys along, or not
                if new == "adversarial":
                    edge.pop("dist", None)
                    edge["objective"] = "nonsaturating"
                else:
                    edge.pop("objective", None)
                    edge["dist"] = draw(st.sampled_from(["normal", "bernoulli", "deterministic", "categorical", "uniform"]))
    elif what in ("cycle", "self_loop") and edges is not None:
        arrow = {"cycle": draw(st.sampled_from(["x -> z", "z -> x"])), "self_loop": draw(st.sampled_from(["z -> z", "x -> x", "x, z -> z"]))}[what]
        kind = draw(st.sampled_from(["generative", "inference"]))
        net = draw(st.sampled_from(names_in(doc, "networks") or ["net"]))
        edges.append({kind: arrow, "net": net, "dist": draw(st.sampled_from(["normal", "deterministic", "bernoulli"]))})
    elif what == "copy_edge" and edges:
        edges.append(copy.deepcopy(edges[draw(st.integers(0, len(edges) - 1))]))
    elif what == "copy_phase" and phases:
        phases.append(copy.deepcopy(phases[draw(st.integers(0, len(phases) - 1))]))
    elif what == "empty":
        key = draw(st.sampled_from(["variables", "networks", "edges", "phases", "data", "train"]))
        doc[key] = draw(st.sampled_from([[], {}, None]))
    return doc


SMALL_SHAPES = st.lists(st.integers(1, 10), min_size=1, max_size=3)
LR = st.one_of(st.floats(1e-9, 10), st.sampled_from([1e-12, 1e3, 1e30]))


@st.composite
def tweak(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Set a key to another value it plausibly takes: these specs often validate, so the
    trainer runs on odd but legal choices (batch of 1, no hidden layers, a categorical prior,
    lr 1e30, dropout 1, a seed of 2^63, a dataset of one row, ...)."""
    choices: list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]] = [
        (("data",), st.sampled_from([{"source": "digits"}, {"source": "digits", "binarize": True, "flatten": False}, {"source": "ring2d", "n_train": 1, "n_test": 1}, {"source": "grid2d", "n_train": 3, "sigma": 1e-30}, {"source": "ring2d", "n_test": 1}, {"source": "digits", "test_fraction": 0.999}])),
        (("train", "batch_size"), st.one_of(st.integers(1, 300), st.just(10**12))),
        (("train", "seed"), st.sampled_from([-1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30])),
        (("train", "on_nonfinite"), st.sampled_from(["raise", "skip", "rollback"])),
        (("train", "optim"), st.fixed_dictionaries({"kind": st.sampled_from(["adam", "adamw", "sgd", "rmsprop"]), "lr": LR})),
        (("metrics",), st.lists(st.sampled_from(["mode_coverage", "held_out_elbo", "nope"]), max_size=2)),
    ]
    for v in names_in(doc, "variables"):
        choices += [
            (("variables", v, "shape"), SMALL_SHAPES),
            (("variables", v, "prior"), st.sampled_from(["normal", "bernoulli", "categorical", "uniform", "deterministic", None])),
            (("variables", v, "observed"), st.booleans()),
            (("variables", v, "data"), st.sampled_from(["x", "y", "label", "nope"])),
        ]
    for n in names_in(doc, "networks"):
        choices += [
            (("networks", n, "hidden"), st.lists(st.integers(0, 40), max_size=3)),
            (("networks", n, "activation"), st.sampled_from(["relu", "tanh", "elu", "gelu", "softplus", "leaky_relu", "sigmoid"])),
            (("networks", n, "batchnorm"), st.booleans()),
            (("networks", n, "dropout"), st.sampled_from([0.0, 0.5, 1.0, -0.5, 2.0])),
            (("networks", n, "out_activation"), st.sampled_from(["none", "tanh", "sigmoid"])),
            (("networks", n, "trainable"), st.booleans()),
        ]
    for i in range(len(doc["edges"]) if isinstance(doc.get("edges"), list) else 0):
        choices += [
            (("edges", i, "dist"), st.sampled_from(["normal", "bernoulli", "deterministic", "categorical", "uniform"])),
            (("edges", i, "objective"), st.sampled_from(["nonsaturating", "minimax", "hinge", "least_squares"])),
            (("edges", i, "options"), st.sampled_from([{}, {"r1": 0.0}, {"r1": 1e30}, {"r1": -1}])),
            (("edges", i, "name"), st.sampled_from(["a", "p_x", "q_z", "adv_x"])),
        ]
    for i in range(len(doc["phases"]) if isinstance(doc.get("phases"), list) else 0):
        choices += [
            (("phases", i, "repeats"), st.integers(0, 3)),
            (("phases", i, "every"), st.integers(0, 3)),
            (("phases", i, "optim"), st.fixed_dictionaries({"kind": st.sampled_from(["adam", "sgd", "rmsprop"]), "lr": LR})),
            (("phases", i, "terms"), st.lists(st.fixed_dictionaries({"term": st.sampled_from(["elbo", "adversarial.d", "adversarial.g"]), "weight": st.sampled_from([0.0, -1.0, 1e30, math.nan, 2.0])}), min_size=1, max_size=2)),
        ]
    path, values = draw(st.sampled_from(choices))
    parent = doc
    for p in path[:-1]:
        if not isinstance(parent, (dict, list)) or (isinstance(parent, dict) and p not in parent) or (isinstance(parent, list) and p >= len(parent)):
            return doc
        parent = parent[p]
    if isinstance(parent, dict):
        value = draw(values)
        if value is None:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    return doc


def to_text(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


@st.composite
def mutated_doc(draw: st.DrawFn) -> str:
    """One of the shipped specs with one to three document-level mutations."""
    doc = copy.deepcopy(DOCS[draw(st.sampled_from(sorted(DOCS)))])
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        mutation = draw(st.sampled_from([tweak, tweak, retype, rename, reshape, restructure]))
        doc = draw(mutation(doc))
        if not isinstance(doc, dict) or not doc:
            break
    return to_text(doc)


DEEP = st.integers(1, 20_000)


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    """A shipped spec's bytes, damaged: random bytes, bad UTF-8, tabs, a BOM, deep nesting,
    aliases, other encodings, duplicated or dropped lines, or text that is no YAML at all."""
    text = BASES[draw(st.sampled_from(sorted(BASES)))]
    data = text.encode("utf-8")
    what = draw(st.sampled_from(["bytes", "splice", "bad_utf8", "tabs", "bom", "deep_list", "deep_map", "deep_inline", "alias", "laughs", "recursive", "not_yaml", "crlf", "latin1", "utf16", "nul", "documents", "truncate", "tags", "long_line", "dup_line", "drop_line"]))
    if what == "bytes":
        return draw(st.binary(max_size=300))
    lines = text.splitlines(keepends=True)
    at = draw(st.integers(0, len(data)))
    line = draw(st.integers(0, len(lines) - 1))
    if what == "splice":
        return data[:at] + draw(st.binary(min_size=1, max_size=20)) + data[at:]
    if what == "bad_utf8":
        return data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80\x80"])) + data[at:]
    if what == "tabs":
        lines[line] = re.sub(r"^( +)", lambda m: "\t" * draw(st.integers(1, 2)), lines[line]) if lines[line].startswith(" ") else "\t" + lines[line]
        return "".join(lines).encode()
    if what == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe"])) + data
    if what == "deep_list":
        n = draw(DEEP)
        return data + f"extra: {'[' * n}1{']' * n}\n".encode()
    if what == "deep_map":
        n = draw(st.integers(1, 3000))
        return data + ("extra:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(n)) + " " * (n + 1) + "1\n").encode()
    if what == "deep_inline":
        n = draw(DEEP)
        return data + f"extra: {'{a: ' * n}1{'}' * n}\n".encode()
    if what == "alias":
        # Anchors and aliases inside the spec itself: valid YAML that must read as if expanded.
        doc = text.replace("hidden: [", "hidden: &h [", 1)
        doc = re.sub(r"(\n  \w+: \{arch: mlp, hidden: )\[[0-9, ]+\]", r"\1*h", doc, count=draw(st.integers(0, 3)))
        return doc.replace("variables:", draw(st.sampled_from(["variables:", "variables: &v", "variables: *nope"])), 1).encode()
    if what == "laughs":
        n = draw(st.integers(2, 12))
        chunks = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, n)]
        return (text + "".join(chunks)).encode()
    if what == "recursive":
        return (text + draw(st.sampled_from(["extra: &r [*r]\n", "extra: &r {a: *r}\n", "extra: &r\n  <<: *r\n", "extra: {<<: [1, 2]}\n", "extra: {<<: *undefined}\n"]))).encode()
    if what == "not_yaml":
        head = draw(st.sampled_from(["def f():\n    return 1\n", "{", "}", "]", "[a, b", ": : :", "- a\n- b\n", "'quote", "key: 'un\n  terminated", "%YAML 9.9\n---\na: 1\n", "? complex\n: key\n", "!!python/object/apply:os.system ['true']\n", "*alias\n", "&anchor\n", "...\n", "---\n...\n", "\x00", "\u0085", "a: b: c\n", "a:\n- b\n c\n", "@", "`"]))
        return (head + draw(st.text(max_size=40))).encode("utf-8", "surrogatepass")
    if what == "crlf":
        return text.replace("\n", draw(st.sampled_from(["\r\n", "\r", "\u2028"]))).encode()
    if what == "latin1":
        return text.replace("description: ", "description: café ", 1).encode("latin-1")
    if what == "utf16":
        return text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    if what == "nul":
        return data[:at] + b"\x00" + data[at:]
    if what == "documents":
        return data + draw(st.sampled_from([b"---\n", b"---\nunigen: 1\n", b"...\n", b"--- |\n  text\n"]))
    if what == "truncate":
        return data[:at]
    if what == "tags":
        tag = draw(st.sampled_from(["!!str", "!!int", "!!float", "!!binary", "!!timestamp", "!!set", "!!omap", "!!pairs", "!custom", "!!python/name:os.system", "!<tag:yaml.org,2002:int>"]))
        return text.replace("shape: [", f"shape: {tag} [", 1).replace("steps: ", f"steps: {tag} ", 1).encode()
    if what == "dup_line":  # a duplicate key, or a duplicate list item
        lines.insert(line, lines[line])
        return "".join(lines).encode()
    if what == "drop_line":
        del lines[line]
        return "".join(lines).encode()
    if what == "long_line":
        return text.replace("description: ", "description: " + "x" * draw(st.integers(1, 200_000)), 1).encode()
    return data


# ------------------------------------------------------------------- the checks


def validate(data: bytes) -> tuple[int, str, str, Path]:
    """`unigen validate FILE` on these bytes: exit code, stdout, stderr, and the file."""
    fd, name = tempfile.mkstemp(suffix=".yaml", prefix="fuzz-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", name])
    return code, out.getvalue(), err.getvalue(), Path(name)


def assert_coded(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code == 2, f"exit {code}: {err}"
    assert CODE_LINE.search(err), err
    for found in re.findall(r"(?:^|: )([A-Z]\d{3}) ", err, re.M):
        assert found in CODES, found


def check_case(data: bytes, registry: Any) -> None:
    code, out, err, path = validate(data)
    try:
        if code != 0:
            STATS["refused by validate"] += 1
            assert_coded(code, err)
            return
        assert " ok " in out, out
        STATS["validated"] += 1
        try:
            program = compile_file(path, registry=registry).program
            trainer = Trainer(program, device="cpu")
            trainer.step()
        except NonFiniteLoss:  # what `compile-and-train` reports as R001
            STATS["step refused (R001)"] += 1
            return
        except UnigenError as exc:
            assert exc.diagnostics and all(d.code in CODES for d in exc.diagnostics), exc
            STATS[f"step refused ({exc.diagnostics[0].code})"] += 1
            if os.environ.get("UNIGEN_FUZZ_VERBOSE"):
                print(f"\n--- step refused:\n{exc}\n{data.decode('utf-8', 'replace')}")
            return
        STATS["trained a step"] += 1
    finally:
        path.unlink(missing_ok=True)


@given(text=mutated_doc())
@fuzz_settings(300)
def test_fuzz_mutated_documents(text: str, registry) -> None:
    STATS["cases"] += 1
    STATS["documents"] += 1
    check_case(text.encode("utf-8"), registry)


@given(data=encoded())
@fuzz_settings(250)
def test_fuzz_damaged_encodings(data: bytes, registry) -> None:
    STATS["cases"] += 1
    STATS["encodings"] += 1
    check_case(data, registry)


@st.composite
def tweaked_doc(draw: st.DrawFn) -> str:
    """A shipped spec with one or two plausible changes: most of these train."""
    doc = copy.deepcopy(DOCS[draw(st.sampled_from(sorted(DOCS)))])
    for _ in range(draw(st.integers(1, 2))):
        doc = draw(tweak(doc))
    return to_text(doc)


@given(text=tweaked_doc())
@fuzz_settings(12)
def test_fuzz_compile_and_train_command(text: str) -> None:
    """The whole command, run directory and all: it finishes, or exits 1 or 2 with coded lines."""
    STATS["cases"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(text, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["compile-and-train", str(spec), "train.eval_samples=50", "train.batch_size=32", "--steps", "2", "--out", str(Path(tmp) / "run"), "--quiet", "--device", "cpu"])
        errors = "\n".join(line for line in err.getvalue().splitlines() if not line.startswith("warning: "))
        assert "Traceback" not in err.getvalue(), err.getvalue()
        if code == 0:
            STATS["compile-and-train finished"] += 1
            assert (Path(tmp) / "run" / "summary.json").is_file()
        else:
            STATS[f"compile-and-train refused (exit {code})"] += 1
            assert code in (1, 2) and CODE_LINE.search(errors), errors


def test_fuzz_tried_enough_cases() -> None:
    """The property tests above ran (this file's tests run in order) and covered both ends:
    specs refused with a code and specs that trained a step."""
    if not (STATS["documents"] and STATS["encodings"]):
        pytest.skip("the fuzz tests did not both run in this session")
    if EXAMPLES:
        pytest.skip("UNIGEN_FUZZ_EXAMPLES sets the number of cases")
    assert STATS["cases"] >= 500, dict(STATS)
    assert STATS["refused by validate"] > 200 and STATS["trained a step"] > 50, dict(STATS)


# ------------------------------------------------- override strings and command lines

# Every dotted key of the shipped specs, list items by index and by name, and keys a family fills.
KEYS = sorted({".".join(map(str, p)) for doc in DOCS.values() for p in paths(doc)} | {"phases.elbo.repeats", "phases.generator.every", "family", "train", "networks.encoder", "edges.1"})
LAUGHS = "[" + ", ".join(["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]) + "]"
ODD_VALUES = ["", "~", "[", "{a: 1", "]]", "[1, 2", "!!python/name:os.system", "!!int x", "!!binary 3", "&a [*a]", "*nope", "[&a 8, *a]", LAUGHS,
              "[" * 3000 + "]" * 3000, "{a: " * 100 + "1" + "}" * 100, "x" * 70_000, "[" + "1," * 20_000 + "1]", "a=b", "=", "- a\n- b", "\t1", "1\x00",
              "'unterminated", "{a: 1, a: 2}", ".inf", ".nan", "true", "yes", "1e400", "0x10", "0o7", "1_000", "2147483648", "-0", "[true, 8]", "[[8]]", "\u202e"]


def flow(value: Any) -> str:
    """A value as one line of flow YAML, as one would type it after `key=`."""
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9).removesuffix("\n").removesuffix("\n...")


# Overrides that both shipped specs take, so that some command lines are accepted.
PLAUSIBLE = ["train.seed=3", "train.steps=5", "train.batch_size=32", "train.optim.lr=1e-3", "description=hello", "description='a: b'", "train.log_every=1",
             "variables.z.shape=[4]", "train.optim={kind: sgd, lr: 0.1}", "name=renamed", "train.eval_every=0", "train.on_nonfinite=skip", "train.seed=&s 7", "variables.z.prior=normal"]


@st.composite
def override_text(draw: st.DrawFn) -> str:
    """A `key=value` override: a plausible one; or a real key or a mutated one, with a plausible
    value or an odd one."""
    if draw(st.sampled_from([False, False, True])):
        return draw(st.sampled_from(PLAUSIBLE))
    key = draw(st.sampled_from(KEYS))
    how = draw(st.sampled_from(["as is"] * 6 + ["typo", "deeper", "cut", "index", "dots", "text"]))
    if how == "typo" and key:
        i = draw(st.integers(0, len(key) - 1))
        key = key[:i] + draw(st.sampled_from(["x", "", ".", "_", "9", " "])) + key[i + 1 :]
    elif how == "deeper":
        key += "." + draw(st.sampled_from(["x", "0", "name", "99"]))
    elif how == "cut":
        key = key.rpartition(".")[0]
    elif how == "index":
        key = re.sub(r"\b\d+\b", draw(st.sampled_from(["99", "-1", "01", "x"])), key, count=1)
    elif how == "dots":
        key = draw(st.sampled_from([f"{key}.", f".{key}", key.replace(".", "..", 1), f" {key} "]))
    elif how == "text":
        key = draw(TEXT)
    value = draw(st.one_of(VALUES.map(flow), TEXT, st.sampled_from(ODD_VALUES)))
    joint = draw(st.sampled_from(["="] * 8 + ["", "==", " = "]))
    return f"{key}{joint}{value}"


SPEC_PATHS = {name: str(ROOT / "specs" / f"{name}.yaml") for name in BASES}
OPTIONS = [
    st.tuples(st.just("--steps"), st.sampled_from(["1", "2", "3", "1", "2", "3", "0", "-1", "abc", "1e3", "2.5", "", "99999999999999999999"])),
    st.tuples(st.just("--device"), st.sampled_from(["cpu", "cpu", "auto", "gpu", ""])),
    st.just(("--quiet",)), st.just(("--dry-run",)), st.just(("--tensorboard",)), st.just(("--out", "RUN")),
    st.tuples(st.just("--track"), st.sampled_from(["nope", "tensorboard"])),
]
JUNK = st.sampled_from([()] * 12 + [("--bogus",), ("-x",), ("--steps",), ("--",), ("-",), ("--device=gpu",), ("--steps=abc",), ("--out",), ("-h",), ("extra",)])


@st.composite
def command_line(draw: st.DrawFn) -> list[str]:
    """A command of the spec layer with overrides and options in a random order."""
    base = draw(st.sampled_from(sorted(BASES)))
    command = draw(st.sampled_from(["validate", "compile", "show-config", "compile-and-train", "compile-and-train"]))
    groups: list[tuple[str, ...]] = [(o,) for o in draw(st.lists(override_text(), max_size=3))]
    if command == "compile-and-train":
        groups += draw(st.lists(st.one_of(*OPTIONS), max_size=4))
    groups.append(draw(JUNK))
    groups = draw(st.permutations(groups))
    head = [command, SPEC_PATHS[base]] if draw(st.sampled_from([True] * 9 + [False])) else [SPEC_PATHS[base], command]  # the spec first: a usage error
    return head + [arg for group in groups for arg in group]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`unigen ARGV` in this process: its exit status (argparse's too), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors (S005) and --help
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_command(argv: list[str], kind: str) -> None:
    code, out, err = run_cli(argv)
    assert "Traceback" not in err + out, err
    errors = "\n".join(line for line in err.splitlines() if not line.startswith("warning: "))
    if code == 0:
        STATS[f"{kind} accepted"] += 1
        return
    found = re.findall(r"(?:^|: )([A-Z]\d{3}) ", errors, re.M)
    STATS[f"{kind} refused ({found[0] if found else 'uncoded'})"] += 1
    assert code in (1, 2), (code, errors)
    assert found and all(c in CODES for c in found), errors


@given(overrides=st.lists(override_text(), min_size=1, max_size=3))
@fuzz_settings(250)
def test_fuzz_override_strings(overrides: list[str]) -> None:
    """`unigen validate SPEC OVERRIDE...`: it validates, or every problem is coded; never a
    traceback, and never a hang (aliases, size and nesting of a value are bounded)."""
    STATS["override cases"] += 1
    check_command(["validate", SPEC_PATHS["vae-digits"], "--", *overrides] if any(o.startswith("-") for o in overrides) else ["validate", SPEC_PATHS["vae-digits"], *overrides], "overrides")


@given(argv=command_line())
@fuzz_settings(150)
def test_fuzz_command_lines(argv: list[str]) -> None:
    """Overrides and options in any order: exit 0, or a coded message (argparse's usage errors
    are S005), never a traceback. Training itself is left out: `compile-and-train` compiles
    (the run directory's part is stubbed), so the case tests the command line and the overrides."""
    from unigen.runs import driver, dryrun

    STATS["command line cases"] += 1
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        def compiled_only(compiled, *args, **kwargs):
            run = Path(tmp) / "run"
            run.mkdir(exist_ok=True)
            (run / "summary.json").write_text('{"metrics": {}}')
            return run

        mp.setattr(driver, "_run", compiled_only)
        mp.setattr(dryrun, "dry_run", lambda spec, overrides, registry, device, out: (compile_file(spec, list(overrides) + ([f"train.device={device}"] if device else []), registry), 0)[1])
        check_command([Path(tmp, "out").as_posix() if a == "RUN" else a for a in argv], "command lines")


def test_fuzz_tried_enough_command_lines() -> None:
    """The two tests above ran, with both outcomes: accepted, and refused with a code (usage
    errors, bad overrides and bad values among them)."""
    if not (STATS["override cases"] and STATS["command line cases"]):
        pytest.skip("the override and command-line fuzz tests did not both run in this session")
    if EXAMPLES:
        pytest.skip("UNIGEN_FUZZ_EXAMPLES sets the number of cases")
    assert STATS["override cases"] >= 250 and STATS["command line cases"] >= 150, dict(STATS)
    refused = {k: v for k, v in STATS.items() if "refused (" in k and k.startswith(("overrides", "command lines"))}
    assert STATS["overrides accepted"] > 10 and STATS["command lines accepted"] > 10, dict(STATS)
    assert {"overrides refused (S004)", "overrides refused (S002)", "command lines refused (S005)"} <= set(refused), dict(STATS)


# ------------------------------------------------------- what the fuzzer found

GAN_TEXT, VAE_TEXT = BASES["gan-ring"], BASES["vae-digits"]


@pytest.mark.parametrize(("text", "code", "message"), [
    # IndexError in validation: an empty shape.
    (GAN_TEXT.replace("z: {prior: normal, shape: [16]}", "z: {prior: normal, shape: []}"), "S002", "variables.z.shape: S002 invalid value []; expected at least 1 item."),
    # ValueError from torch.optim.Adam when the trainer was built: betas out of range.
    (GAN_TEXT.replace("betas: [0.5, 0.999]}}\n  - {name: generator", "betas: [0.5, 9223372036854775808]}}\n  - {name: generator"), "G016", "phases.0.optim: G016 optimizer `adam` refuses its options: ValueError: Invalid beta parameter at index 1"),
    # AttributeError inside PyYAML: a tag its constructor cannot build.
    (GAN_TEXT.replace("steps: 10000", "steps: !!timestamp 10000"), "Y001", "Y001 bad value `10000` for tag `!!timestamp`"),
    # RecursionError inside PyYAML: nesting thousands of levels deep.
    (GAN_TEXT + "extra: " + "[" * 5000 + "]" * 5000 + "\n", "Y001", "Y001 the document nests lists and mappings too deeply to be read"),
    (GAN_TEXT + "extra: " + "{a: " * 300 + "1" + "}" * 300 + "\n", "Y001", "Y001 the document nests lists and mappings more than 64 levels deep here"),
    # RuntimeError in backward: the fake side is a non-reparameterised sample, no gradient.
    (GAN_TEXT.replace("net: generator, dist: deterministic", "net: generator, dist: bernoulli"), "G010", "phases.1.update: G010 phase `generator` updates `generator`, but the gradient of its terms (adversarial.g@adv_x) cannot reach it (they reach: discriminator); its edge `p_x` samples `bernoulli`, which passes no gradient back to it."),
    # RuntimeError from torch.manual_seed, and enormous allocations: out-of-range numbers.
    (GAN_TEXT.replace("seed: 0", "seed: 18446744073709551616"), "S002", "train.seed: S002 invalid value 18446744073709551616; expected a number less than 9223372036854775808."),
    (GAN_TEXT.replace("batch_size: 256", "batch_size: 1000000000000"), "S002", "train.batch_size: S002 invalid value 1000000000000; expected a number less than 2147483648."),
], ids=["empty-shape", "adam-betas", "timestamp-tag", "deep-lists", "deep-maps", "bernoulli-fake", "seed", "batch-size"])
def test_fuzz_found_crashes_are_coded_errors(text: str, code: str, message: str, tmp_path: Path, cli) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    exit_code, _, err = cli("validate", path)
    assert exit_code == 2 and "Traceback" not in err, err
    assert f" {code} " in err and message in err, err


@pytest.mark.parametrize(("old", "new", "message"), [
    # RuntimeError (can't allocate memory) while building the networks.
    ("hidden: [128, 128], activation: relu}\n  discriminator", "hidden: [1000000000000], activation: relu}\n  discriminator", "networks.generator: G016 the networks would hold 69.1 TiB of parameters"),
    # ValueError from torch.nn.Dropout while building the networks.
    ("hidden: [128, 128], activation: relu}\n  discriminator", "hidden: [8], dropout: -0.5}\n  discriminator", "networks.generator: G016 network `generator` (mlp) cannot be built for [16] -> [2]: ValueError: dropout probability has to be between 0 and 1, but got -0.5"),
], ids=["huge", "dropout"])
def test_fuzz_found_network_crashes_are_g016(old: str, new: str, message: str, tmp_path: Path, registry) -> None:
    path = tmp_path / "spec.yaml"
    assert old in GAN_TEXT
    path.write_text(GAN_TEXT.replace(old, new))
    program = compile_file(path, ["train.device=cpu"], registry=registry).program
    with pytest.raises(UnigenError) as info:
        Trainer(program)
    assert message in str(info.value)


# ------------------------------------------------- failures inside a training step


class Boom(Term):
    """Fine for two calls, then raises: a plugin's bug met in the middle of training."""

    def bind(self, site):
        calls = [0]

        def loss(ctx):
            calls[0] += 1
            ctx.q["z"]  # noqa: B018 - computes a value, whose shape the message lists
            if calls[0] > 2:
                raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x8 and 7x64)")
            return torch.zeros(())

        return Bound(loss, "0, then an exception", traces=frozenset("q"))


class BoomPlugin:
    __name__ = "boom_test"

    @hookimpl
    def unigen_register_terms(self, register):
        register("boom", Boom())


@pytest.fixture
def boom_registry(monkeypatch):
    """The CLI's registry, with the `boom` term added."""
    from unigen.api import registry as registry_module

    reg = load_registry(extra=[BoomPlugin()])
    monkeypatch.setattr(registry_module, "_DEFAULT", reg)
    return reg


BOOM_OPTS = ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]", "train.batch_size=32", "train.log_every=1", "--steps", "5", "--device", "cpu", "--quiet"]


def test_fuzz_exception_in_a_step_is_r004_naming_phase_term_and_step(tmp_path: Path, boom_registry, cli, monkeypatch) -> None:
    monkeypatch.delenv("UNIGEN_TRACEBACK", raising=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(VAE_TEXT.replace("terms: [elbo]", "terms: [elbo, boom]"))
    code, _, err = cli("compile-and-train", spec, *BOOM_OPTS, "--out", tmp_path / "run")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("phases.0.terms.1: R004 phase `elbo`, term `boom` failed at step 3: RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x8 and 7x64)"), err
    assert "(values computed so far: q.x [32, 64], q.z [32, 8])" in err
    assert "The last good state (step 2) is saved as" in err and "--resume auto" in err
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.pt")["step"] == 2
    # UNIGEN_TRACEBACK=1 shows where it happened, above the same message.
    monkeypatch.setenv("UNIGEN_TRACEBACK", "1")
    code, _, err = cli("compile-and-train", spec, *BOOM_OPTS, "--out", tmp_path / "run2")
    assert code == 1 and "Traceback (most recent call last)" in err and "in loss" in err and "R004 phase `elbo`, term `boom`" in err


def test_fuzz_term_returning_no_scalar_is_r004(tmp_path: Path, registry) -> None:
    program = compile_file(ROOT / "specs" / "vae-digits.yaml", ["train.device=cpu", "networks.encoder.hidden=[8]", "networks.decoder.hidden=[8]"], registry=registry).program
    trainer = Trainer(program)
    ref = program.phases[0].terms[0]
    real = ref.bound.loss
    object.__setattr__(ref.bound, "loss", lambda ctx: real(ctx).expand(3))
    try:
        with pytest.raises(UnigenError) as info:
            trainer.step()
    finally:
        object.__setattr__(ref.bound, "loss", real)
    assert "R004 phase `elbo`, term `elbo` failed at step 1: TypeError: the term returned a tensor of shape [3]; expected a tensor holding one number" in str(info.value)


# ------------------------------------------------------------------ broken pipes


def test_fuzz_broken_pipe_is_quiet() -> None:
    """`unigen schema | head -c 0`: the reader is gone before unigen writes."""
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "unigen", "schema"], stdout=write, stderr=subprocess.PIPE, timeout=60, env={**os.environ, "UNIGEN_DISABLE_PLUGIN_AUTOLOAD": "1"})
    finally:
        os.close(write)
    assert proc.stderr == b"", proc.stderr.decode()
    assert proc.returncode == 141
    # In-process, with a stream that breaks: the same quiet exit.

    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    err = io.StringIO()
    with contextlib.redirect_stdout(Broken()), contextlib.redirect_stderr(err):
        assert main(["schema"]) == 141
    assert err.getvalue() == ""
