"""Fuzzing: whatever text a spec file holds, archdsl answers with an ``ArchError``, quickly.

A spec is untrusted input. Hypothesis throws four kinds of text at :func:`archdsl.check`:

- grammatical specs built from the grammar's constructs (imports, constants, blocks with
  defaults, networks with ``input``/``init``, aliases with ``scaled``, chains, labels and
  label templates, repetition, groups, ``seq``, merges, ``if``/``else``, ``for``, side
  outputs and ``outputs(...)``, ``assert``, every builtin and operator), mostly
  meaningless but well-formed;
- ungrammatical token soup from the language's vocabulary plus stray characters;
- mutations of every bundled spec, as written and with its imports inlined (token
  deletion, duplication and swaps, numbers replaced by 0, -1, huge values and floats,
  truncation, stray unicode and NUL bytes, names replaced by keywords and ops);
- ``--set`` values for the command line.

Each case passes when ``check`` returns a graph or raises an ``ArchError`` that renders,
within :data:`CASE_SECONDS` (:data:`LARGE_CASE_SECONDS` for one that reaches a size limit
or checks a very large network; both times :func:`fuzzoracle.slowness` on a machine slower
than the one they were set on); any other exception, or a slower case, fails. A sample also
runs through the CLI (``archdsl check FILE``): exit 0 or 1, never a traceback. This
oracle, :func:`run_case` and :func:`run_cli`, is in tests/fuzzoracle.py.

Runs are deterministic (``derandomize=True``, no example database), so CI is
reproducible; ``ARCHDSL_FUZZ_SCALE=20 pytest tests/test_fuzz.py`` runs twenty times as many
examples (with a different derandomized stream) for a longer local hunt. Inputs that found
bugs live in ``tests/fuzz_regressions/`` and are replayed by test_fuzz_regressions.py,
with the tests of the caret line under an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import archdsl
from archdsl.elaborate.evaluate import BUILTINS, SCALING_BUILTINS
from archdsl.elaborate.loader import bundled_spec_root
from archdsl.ops import OPS
from archdsl_cli.main import UsageError, parse_set
from fuzzoracle import CASE_SECONDS, run_case, run_cli, time_limit

ROOT = Path(__file__).resolve().parent.parent
SPEC_ROOT = bundled_spec_root()

SCALE = max(1, int(os.environ.get("ARCHDSL_FUZZ_SCALE", "1")))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        derandomize=SCALE == 1,
        database=None,
        deadline=None,  # timed by run_case, which re-measures before failing
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
        # The explain phase replays a failing case under a line tracer, several times
        # slower: a case near CASE_SECONDS (an evaluation budget exhausted, about 1 s) then
        # reads as a hang, and the report is a FlakyFailure instead of the case.
        phases=[phase for phase in Phase if phase is not Phase.explain],
    )


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_cli")


# ---- the corpus of bundled specs ---------------------------------------------------------

_IMPORT = re.compile(r'^[ \t]*import[ \t]+"([^"\n]*)"[ \t]*(#[^\n]*)?$', re.M)


def inline_imports(path: Path, seen: set[Path] | None = None) -> str:
    """The text of ``path`` with each import replaced by the imported file's text, once."""
    seen = set() if seen is None else seen
    seen.add(path.resolve())

    def expand(m: re.Match[str]) -> str:
        for candidate in (path.parent / m.group(1), SPEC_ROOT / m.group(1)):
            if candidate.is_file():
                if candidate.resolve() in seen:
                    return ""
                return inline_imports(candidate, seen)
        return m.group(0)  # pragma: no cover - every bundled import resolves

    return _IMPORT.sub(expand, path.read_text(encoding="utf-8"))


BUNDLED = sorted([*SPEC_ROOT.glob("*.arch"), *SPEC_ROOT.glob("lib/*.arch")])
TOP_LEVEL = sorted(SPEC_ROOT.glob("*.arch"))


def _id(path: Path) -> str:
    return str(path.relative_to(SPEC_ROOT))


def test_corpus_covers_every_bundled_spec() -> None:
    assert len(TOP_LEVEL) >= 20
    assert {p.stem for p in TOP_LEVEL} == set(archdsl.list_specs())
    for path in TOP_LEVEL:  # the inlined text is the same network
        inlined = inline_imports(path)
        assert not _IMPORT.search(inlined), path
        assert archdsl.check(inlined, path=str(path)).output_shape == (
            archdsl.check_file(path).output_shape
        )


# ---- mutations ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r'"[^"\n]*"|\'[^\'\n]*\''  # strings
    r"|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?"  # numbers
    r"|[A-Za-z_][A-Za-z0-9_]*"  # names and keywords
    r"|->|\*\*|//|==|!=|<=|>="  # two-character operators
    r"|#[^\n]*|\n|[ \t\r\f]+"  # comments, newlines, blanks
    r"|.",  # any other character
    re.S,
)
_BLANK = re.compile(r"[ \t\r\f]+|#[^\n]*")
_NUMBER = re.compile(r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

NUMBERS = [
    *"0 -1 1 2 3 7 64 0.0 0.5 1.5 -0.5 1e-5 1e-300 1e308 1e999 10000 10001 65536".split(),
    *"1000000000000000000 1000000000000000001 99999999999999999999999999 2147483648".split(),
    *"-9223372036854775809 1e18".split(),
    "9" * 400,
]
# Control characters, invisible and look-alike unicode, line separators Python splits on
# (\f \v \x1c \x85 \u2028), characters the language does not use, and its own punctuation.
STRAYS = [
    *"\x00\x01\x1b\x7f\x1c\x85\u00e9\u00a0\u200b\u2028\ufeff\ufffd\U0001f642\u0130\u212a",
    *"\t\r\f\v\\`$@?!&|^~'\"{}()[];:,.=\n#x",
    *["\r\n", "->", "**"],
]
KEYWORDS = (
    "import assert block network input init outputs side seq add concat mul if else for in x scaled true "
    "false none and or not"
).split()
NAMES = sorted({*KEYWORDS, *OPS, *BUILTINS, *SCALING_BUILTINS, "__import__", "eval", "self",
                "__class__", "in_", "planes", "stride", "layers", "num_classes", "zz"})  # fmt: skip


@st.composite
def mutations(draw: st.DrawFn, text: str) -> str:
    """``text`` with one to four random edits."""
    tokens = _TOKEN.findall(text)
    for _ in range(draw(st.integers(1, 4))):
        n = len(tokens)
        kind = draw(
            st.sampled_from(
                ["delete", "duplicate", "swap", "number", "truncate", "stray", "name", "insert"]
            )
        )
        significant = [i for i, t in enumerate(tokens) if not _BLANK.fullmatch(t)]
        if not significant or kind == "truncate":
            text = "".join(tokens)
            tokens = _TOKEN.findall(text[: draw(st.integers(0, len(text)))])
            continue
        i = draw(st.sampled_from(significant))
        if kind == "delete":
            del tokens[i]
        elif kind == "duplicate":
            tokens.insert(i, tokens[i] + draw(st.sampled_from(["", " ", "\n"])))
        elif kind == "swap":
            j = draw(st.sampled_from(significant))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "number":
            numbers = [k for k in significant if _NUMBER.fullmatch(tokens[k])] or [i]
            tokens[draw(st.sampled_from(numbers))] = draw(st.sampled_from(NUMBERS))
        elif kind == "stray":
            tokens.insert(draw(st.integers(0, n)), draw(st.sampled_from(STRAYS)))
        elif kind == "name":
            names = [k for k in significant if _NAME.fullmatch(tokens[k])] or [i]
            tokens[draw(st.sampled_from(names))] = draw(st.sampled_from(NAMES))
        else:  # insert a token copied from elsewhere in the text
            tokens.insert(draw(st.integers(0, n)), tokens[draw(st.sampled_from(significant))])
    return "".join(tokens)


@pytest.mark.parametrize("spec", BUNDLED, ids=_id)
@fuzz_settings(12)
@given(data=st.data())
def test_mutated_bundled_spec(spec: Path, data: st.DataObject) -> None:
    """Every bundled spec file as written (imports and all), mutated."""
    text = data.draw(mutations(spec.read_text(encoding="utf-8")), label="text")
    run_case(text, str(spec))


@pytest.mark.parametrize("spec", TOP_LEVEL, ids=_id)
@fuzz_settings(25)
@given(data=st.data())
def test_mutated_inlined_spec(spec: Path, data: st.DataObject) -> None:
    """Every bundled network with its library inlined, so that mutations reach the blocks
    and the elaborator, not only the import line."""
    text = data.draw(mutations(inline_imports(spec)), label="text")
    run_case(text, str(spec))


# ---- grammatical specs from the grammar's constructs ---------------------------------------

VARS = ["a", "b", "c", "n", "i", "j", "k", "w", "planes", "stride", "layers", "zz"]
INTS = st.one_of(st.integers(0, 16), st.sampled_from(NUMBERS[:20]))
ATOM_WORDS = ['0.5', '1e-5', '2.0', '"same"', '"valid"', '"relu"', "'fan_out'", '""', "true",
              "false", "none", "in", "in.c", "in.h", "in.w", "in.shape", "in.rank", "in.f",
              "in.zz"]  # fmt: skip
ATOMS = st.one_of(INTS.map(str), st.sampled_from(ATOM_WORDS), st.sampled_from(VARS))
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or"]
FUNCS = sorted({*BUILTINS, *SCALING_BUILTINS, "zz", "eval", "__import__"})


@st.composite
def exprs(draw: st.DrawFn, depth: int = 3) -> str:
    """An expression of at most ``depth`` levels: every operator, builtin and postfix form."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return draw(ATOMS)
    kind = draw(st.integers(0, 8))
    sub = exprs(depth - 1)
    if kind == 0:
        return f"{draw(sub)} {draw(st.sampled_from(BINOPS))} {draw(sub)}"
    if kind == 1:
        return f"({draw(sub)})"
    if kind == 2:
        return draw(st.sampled_from(["-", "+", "not "])) + draw(sub)
    if kind == 3:
        return f"{draw(sub)} if {draw(sub)} else {draw(sub)}"
    if kind == 4:
        return "[" + ", ".join(draw(st.lists(sub, max_size=3))) + "]"
    if kind == 5:
        cond = f" if {draw(sub)}" if draw(st.booleans()) else ""
        return f"[{draw(sub)} for {draw(st.sampled_from(VARS))} in {draw(sub)}{cond}]"
    if kind == 6:
        return f"{draw(sub)}[{draw(sub)}]"
    if kind == 7:
        return f"{draw(st.sampled_from(FUNCS))}({', '.join(draw(st.lists(sub, max_size=3)))})"
    return f"{draw(sub)}.{draw(st.sampled_from(['c', 'h', 'w', 'shape', 'zz']))}"


EXPRS = exprs(3)
SMALL_EXPRS = st.one_of(INTS.map(str), st.sampled_from(VARS), exprs(1))

# Op calls that usually fit, so that generated networks often elaborate all the way.
SENSIBLE_OPS = ["relu", "bn", "identity", "sigmoid", "silu", "maxpool(2)", "avgpool(3, 1, 1)",
                "global_avgpool", "global_avgpool(flatten=true)", "flatten", "dropout(0.1)",
                "adaptive_avgpool(1)", "linear(4)", "groupnorm(1)", "drop_path(0.1)",
                "upsample(2)", 'upsample(2, mode="bilinear")', "conv_transpose(4, 2, stride=2)",
                "()"]  # fmt: skip
CONV_OPTIONS = ["", ", padding=1", ', padding="same"', ", stride=2", ", bias=false", ", groups=2"]
SENSIBLE = st.one_of(
    st.tuples(st.integers(1, 8), st.integers(1, 3), st.sampled_from(CONV_OPTIONS)).map(
        lambda t: f"conv({t[0]}, {t[1]}{t[2]})"
    ),
    st.sampled_from(SENSIBLE_OPS),
)


ARG_NAMES = "out kernel stride padding groups bias p eps size flatten planes zz".split()
LABEL_WORDS = "conv1 bn layer stage fc block input x1 training forward _x side".split()
FIELD_NAMES = "logits aux out count names _x".split()  # outputs(...) fields
IMPORTS = ["lib/resnet.arch", "lib/vgg.arch", "resnet18.arch", "missing.arch",
           "../specs/lib/vgg.arch", "/etc/hostname", ".", "lib", ""]  # fmt: skip
INIT_FUNCTIONS = ['kaiming_normal(mode="fan_out")', "zeros", "normal(0, 0.01)", "constant(1)",
                  "zz", "trunc_normal(0, 1, -2, 2)"]  # fmt: skip


@st.composite
def op_calls(draw: st.DrawFn, blocks: list[str]) -> str:
    if draw(st.integers(0, 2)) == 0:
        return draw(SENSIBLE)
    name = draw(st.sampled_from([*OPS, *blocks, "zz", "network"] if blocks else [*OPS, "zz"]))
    if draw(st.booleans()):
        return name
    args = []
    for _ in range(draw(st.integers(0, 4))):
        value = draw(SMALL_EXPRS)
        if draw(st.booleans()):
            key = draw(st.sampled_from(ARG_NAMES))
            value = f"{key}={value}"
        args.append(value)
    return f"{name}({', '.join(args)})"


@st.composite
def labels(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(LABEL_WORDS))
    if draw(st.integers(0, 3)) == 0:
        word += "{" + draw(SMALL_EXPRS) + "}" + draw(st.sampled_from(["", "_a"]))
    return word


@st.composite
def items(draw: st.DrawFn, blocks: list[str], depth: int) -> str:
    kinds = ["op"] * 6
    if depth > 0:
        kinds += ["group", "seq", "merge", "if", "for"]
    kind = draw(st.sampled_from(kinds))
    if kind == "op":
        primary = draw(op_calls(blocks))
    elif kind == "group":
        primary = "(" + draw(chains(blocks, depth - 1)) + ")"
    elif kind == "seq":
        primary = "seq { " + draw(bodies(blocks, depth - 1)) + " }"
    elif kind == "merge":
        branches = draw(st.lists(chains(blocks, depth - 1), min_size=1, max_size=3))
        primary = (
            draw(st.sampled_from(["add", "concat", "mul"])) + " {\n" + "\n".join(branches) + "\n}"
        )
    elif kind == "if":
        primary = f"if {draw(SMALL_EXPRS)} {{ {draw(bodies(blocks, depth - 1))} }}"
        if draw(st.booleans()):
            primary += f" else {{ {draw(bodies(blocks, depth - 1))} }}"
    else:
        var = draw(st.sampled_from(VARS))
        primary = f"for {var} in {draw(SMALL_EXPRS)} {{ {draw(bodies(blocks, depth - 1))} }}"
    if draw(st.integers(0, 2)) == 0:
        primary = f"{draw(labels())}: {primary}"
    if draw(st.integers(0, 4)) == 0:
        primary += f" x {draw(st.one_of(st.integers(0, 3).map(str), SMALL_EXPRS))}"
    return primary


@st.composite
def references(draw: st.DrawFn) -> str:
    """``@path``: label words joined by ``.``, with numbers, sometimes a label's template."""
    parts = [draw(labels())]
    for _ in range(draw(st.integers(0, 2))):
        parts.append(draw(st.one_of(labels(), st.integers(0, 3).map(str))))
    return "@" + ".".join(parts)


@st.composite
def chains(draw: st.DrawFn, blocks: list[str], depth: int) -> str:
    parts = draw(st.lists(items(blocks, depth), min_size=1, max_size=3))
    if draw(st.integers(0, 5)) == 0:  # usually first, where a reference may stand
        parts.insert(draw(st.sampled_from([0, 0, 0, len(parts)])), draw(references()))
    if draw(st.integers(0, 8)) == 0:
        parts.insert(
            draw(st.integers(0, len(parts))), f"side {draw(labels())}: {draw(op_calls(blocks))}"
        )
    sep = draw(st.sampled_from([" -> ", "\n  -> ", " ->\n "]))
    return sep.join(parts)


@st.composite
def bodies(draw: st.DrawFn, blocks: list[str], depth: int) -> str:
    stmts = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.integers(0, 9))
        if kind < 2:
            stmts.append(f"{draw(st.sampled_from(VARS))} = {draw(EXPRS)}")
        elif kind == 2:
            message = draw(st.sampled_from(["", ', "why"', ", 3"]))
            stmts.append(f"assert {draw(SMALL_EXPRS)}{message}")
        else:
            stmts.append(draw(chains(blocks, depth)))
    return draw(st.sampled_from(["\n", "; "])).join(stmts)


@st.composite
def params(draw: st.DrawFn) -> str:
    names = draw(st.lists(st.sampled_from(VARS), max_size=3, unique=True))
    out = []
    for name in names:
        out.append(f"{name} = {draw(SMALL_EXPRS)}" if draw(st.booleans()) else name)
    return "(" + ", ".join(out) + ")" if out or draw(st.booleans()) else ""


@st.composite
def spec_files(draw: st.DrawFn) -> str:
    """A whole spec file: imports, constants, blocks, networks and aliases."""
    lines = []
    blocks: list[str] = []
    if draw(st.integers(0, 5)) == 0:
        target = draw(st.sampled_from(IMPORTS))
        lines.append(f'import "{target}"')
        if target.startswith("lib/resnet"):
            blocks += ["basic", "bottleneck"]
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"{draw(st.sampled_from(VARS))} = {draw(EXPRS)}")
    for i in range(draw(st.integers(0, 2))):
        name = f"blk{i}"
        body = draw(bodies([*blocks, name], 2))  # calling itself is a recursion error
        lines.append(f"block {name}{draw(params())} {{\n  {body}\n}}")
        blocks.append(name)
    nets = []
    for i in range(draw(st.integers(1, 2))):
        name = f"net{i}"
        c, h, w = draw(st.tuples(st.integers(1, 4), st.integers(1, 16), st.integers(1, 16)))
        shape = draw(st.one_of(st.just(f"[{c}, {h}, {w}]"), st.just(f"[{c * h}]"), SMALL_EXPRS))
        body = [f"input {shape}"]
        if draw(st.integers(0, 3)) == 0:
            target = draw(st.sampled_from(["conv", "bn", "linear", "fc", "conv1", "zz"]))
            tensor = draw(st.sampled_from(["weight", "bias", "zz"]))
            fn = draw(st.sampled_from(INIT_FUNCTIONS))
            body.append(f"init {target}.{tensor} = {fn}")
        if draw(st.integers(0, 3)) == 0:  # usually naming outputs the network lacks
            sources = draw(
                st.lists(st.sampled_from(["out", *LABEL_WORDS, "zz"]), min_size=1, max_size=3)
            )
            fields = [
                f"{draw(st.sampled_from(FIELD_NAMES))}={s}" if draw(st.booleans()) else s
                for s in sources
            ]
            body.append(f"outputs({', '.join(fields)})")
        body.append(draw(bodies(blocks, 2)))
        lines.append(f"network {name}{draw(params())} {{\n  " + "\n  ".join(body) + "\n}")
        nets.append(name)
    if draw(st.integers(0, 3)) == 0:
        base = draw(st.sampled_from([*nets, "zz"]))
        args = ", ".join(
            f"{v}={draw(SMALL_EXPRS)}" for v in draw(st.lists(st.sampled_from(VARS), max_size=2))
        )
        scaled = draw(
            st.sampled_from(
                [
                    "",
                    " scaled(width=2.0)",
                    " scaled(phi=1)",
                    " scaled(depth=0)",
                    " scaled(phi=100)",
                    " scaled(zz=1)",
                ]
            )
        )
        lines.append(f"network alias = {base}({args}){scaled}")
    return draw(st.sampled_from(["\n", "\n\n", ";"])).join(lines)


@fuzz_settings(500)
@given(text=spec_files())
def test_grammatical_specs(text: str) -> None:
    outcome = run_case(text)
    if outcome == "ok":  # the analyses and the linter run on any checked graph too
        graph = archdsl.check(text)
        archdsl.count_params(graph)
        archdsl.summary(graph).render("text")
        assert all(w.span.line > 0 for w in archdsl.lint(text))
        compile(archdsl.emit_python(graph), "<emitted>", "exec")  # the .py output parses


@fuzz_settings(300)
@given(text=spec_files().flatmap(mutations))
def test_mutated_grammatical_specs(text: str) -> None:
    run_case(text)


# ---- ungrammatical text ------------------------------------------------------------------

VOCABULARY = [
    *KEYWORDS,
    *sorted(OPS),
    *BUILTINS,
    *VARS,
    *NUMBERS[:12],
    '"s"',
    "'t'",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ";",
    ".",
    "=",
    "->",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "\n",
    " ",
    "#c\n",
]


@fuzz_settings(800)
@given(
    tokens=st.lists(st.one_of(st.sampled_from(VOCABULARY), st.sampled_from(STRAYS)), max_size=40)
)
def test_token_soup(tokens: list[str]) -> None:
    run_case(" ".join(tokens))


@fuzz_settings(300)
@given(text=st.text(max_size=60))
def test_arbitrary_text(text: str) -> None:
    run_case(text)


@fuzz_settings(300)
@given(tokens=st.lists(st.sampled_from(VOCABULARY), max_size=12))
def test_network_body_soup(tokens: list[str]) -> None:
    """Soup inside a well-formed network, so that the elaborator sees more of it."""
    run_case("network n {\n  input [3, 8, 8]\n  " + " ".join(tokens) + "\n}")


@fuzz_settings(600)
@given(expr=EXPRS)
def test_expressions(expr: str) -> None:
    """Every expression, at the top level and inside a block with an ``in``."""
    run_case(f"v = {expr}\nnetwork n {{ input [3, 8, 8]; relu }}")
    run_case(f"block b {{ conv({expr}, 1) }}\nnetwork n {{ input [3, 8, 8]; b }}")


# ---- the command line ----------------------------------------------------------------------


@fuzz_settings(300)
@given(
    value=st.one_of(
        EXPRS, st.text(max_size=20), st.lists(st.sampled_from(VOCABULARY), max_size=6).map("".join)
    )
)
def test_set_values(value: str) -> None:
    """``--set name=VALUE``: a value or a usage error, never a crash."""
    with time_limit(10 * CASE_SECONDS):
        try:
            parse_set(f"num_classes={value}")
        except UsageError as e:
            assert e.message.startswith("--set"), e.message


@fuzz_settings(120)
@given(data=st.data())
def test_cli_on_mutated_specs(cli_dir: Path, data: st.DataObject) -> None:
    """A sample of mutated bundled specs through ``archdsl check FILE``."""
    spec = data.draw(st.sampled_from(TOP_LEVEL), label="spec")
    text = data.draw(
        st.one_of(mutations(inline_imports(spec)), mutations(spec.read_text("utf-8"))), label="text"
    )
    run_cli(text, cli_dir)


@fuzz_settings(120)
@given(text=st.one_of(spec_files(), spec_files().flatmap(mutations)))
def test_cli_on_generated_specs(cli_dir: Path, text: str) -> None:
    run_cli(text, cli_dir)
