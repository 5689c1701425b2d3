"""Name resolution (``archdsl.passes.resolve``): every unknown name a check is certain to
meet is reported with the first error, each exactly as the elaborator words it; nothing in
code that may not run, nothing dynamic, never anything for a valid spec; the rest is lint."""

from __future__ import annotations

import doctest
import textwrap
from pathlib import Path

import pytest

import archdsl
import archdsl.passes.resolve
from archdsl.elaborate.loader import Loader, NetworkRef, bundled_spec_root
from archdsl.errors import MAX_ERRORS
from archdsl.passes.resolve import bindings, certain_errors, unknown_names
from archdsl_cli.main import main


def module_of(text: str, path: str = "t.arch"):  # type: ignore[no-untyped-def]
    return Loader().load_source(textwrap.dedent(text).lstrip("\n"), path)


def certain(text: str, network: str | None = None, **given: object) -> list[archdsl.ArchError]:
    module = module_of(text)
    ref = module.names[network or module.local_networks[-1]]
    return certain_errors(module, ref, given)


def check_error(text: str, **params: object) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.check(textwrap.dedent(text).lstrip("\n"), path="t.arch", **params)
    return info.value


def test_doctest() -> None:
    assert doctest.testmod(archdsl.passes.resolve).failed == 0


# ---- each kind of unknown name, worded as the elaborator words it ---------------------------

ONE_UNKNOWN = {
    "name": "width = 16\nnetwork n { input [3, 8, 8]; conv(widht, 3) }",
    "op": "network n { input [3, 8, 8]; conv(8, 3) -> rleu }",
    "labelled op": "network n { input [3, 8, 8]; act: rleu }",
    "block": "block conv_bn { conv(8, 3) -> bn }\nnetwork n { input [3, 8, 8]; conv_nb }",
    "constant as a layer": "k = 3\nnetwork n { input [3, 8, 8]; k }",
    "network as a layer": "network m { input [3, 8, 8]; relu }\nnetwork n { input [3, 8, 8]; m }",
    "function": "network n { input [3, 8, 8]; conv(mx(8, 4), 3) }",
    "name in a block": "block b { conv(widht, 3) }\nnetwork n { input [3, 8, 8]; b }",
    "later parameter": "block b(k = j, j = 1) { conv(k, 3) }\nnetwork n { input [3, 8, 8]; b }",
    "assigned later": "block b { k = j; j = 2; conv(k, 3) }\nnetwork n { input [3, 8, 8]; b }",
    "local of a branch": (
        "block b { if true { j = 2 }; conv(j, 3) }\nnetwork n { input [3, 8, 8]; b }"
    ),
    "loop variable after the loop": (
        "block b { for i in [1] { relu }; conv(i, 3) }\nnetwork n { input [3, 8, 8]; b }"
    ),
    "in before input": "network n { c = in.c; input [3, 8, 8]; relu }",
    "in in a network default": "network n(c = in.c) { input [3, 8, 8]; conv(c, 1) }",
    "attribute of in": "block b { conv(in.channels, 1) }\nnetwork n { input [3, 8, 8]; b }",
    "label": "network n { input [3, 8, 8]; layer{idx}: relu }",
    "repetition count": "network n { input [3, 8, 8]; relu x count }",
    "for list": "network n { input [3, 8, 8]; for i in sizes { relu } }",
    "if condition": "network n { input [3, 8, 8]; if deep { relu } }",
    "comprehension list": "network n { input [3, 8, 8]; conv(sum([i for i in sizes]), 1) }",
    "comprehension list with a filter": (
        "network n { input [3, 8, 8]; conv(sum([i for i in sizes if i > 0]), 1) }"
    ),
    "ternary condition": "network n { input [3, 8, 8]; conv(8 if deep else 4, 1) }",
    "left of and": "network n { input [3, 8, 8]; if deep and true { relu } }",
    "merge branch": "network n { input [3, 8, 8]; add { relu; rleu } }",
    "side output": "network n { input [3, 8, 8]; side aux: rleu -> relu }",
    "init function": "network n { input [3, 8, 8]; init conv.weight = kaiming(); conv(8, 3) }",
    "init tensor": "network n { input [3, 8, 8]; init conv.weights = zeros; conv(8, 3) }",
    "init argument": "network n { input [3, 8, 8]; init conv.weight = normal(0, sd); conv(8, 3) }",
    "alias base": "network m { input [3, 8, 8]; relu }\nnetwork n = mm()",
    "alias argument": "network m(k = 1) { input [3, 8, 8]; relu x k }\nnetwork n = m(k=kk)",
    "scaled argument": (  # scaled() sees no names at all, not even constants
        "w = 2.0\nnetwork m { input [3, 8, 8]; relu }\nnetwork n = m() scaled(width=w)"
    ),
}


@pytest.mark.parametrize("kind", sorted(ONE_UNKNOWN))
def test_the_error_is_the_elaborators(kind: str) -> None:
    """The one error found is the one the elaborator raises: class, message and span."""
    text = ONE_UNKNOWN[kind]
    err = check_error(text)
    found = certain(text)
    assert [(type(f), f.message, f.span) for f in found] == [(type(err), err.message, err.span)]
    assert err.others == [] and "errors" not in err.render()


# ---- several errors ----------------------------------------------------------------------

SEVERAL = """
block conv_bn(out, stride = 1) {
  conv(out, 3, stride=strides, padding=1) -> bn -> rleu
}
network n(num_classes = 10) {
  input [3, 8, 8]
  conv_bn(widht) -> conv_bn(8) -> global_avgpool(flatten=true)
  -> linear(num_clases)
}
"""


def test_every_certain_unknown_name_is_reported_once() -> None:
    err = check_error(SEVERAL)
    assert type(err) is archdsl.ArchNameError
    assert (err.line, err.column, err.message) == (6, 11, "unknown name 'widht'")
    assert [(o.line, o.column, o.message) for o in err.others] == [
        (2, 23, "unknown name 'strides'; did you mean 'stride'?"),
        (2, 52, "unknown op or block 'rleu'; did you mean 'relu'?"),  # the block once
        (7, 13, "unknown name 'num_clases'; did you mean 'num_classes'?"),
    ]
    rendered = err.render()
    assert rendered.endswith("\n4 errors")
    assert rendered.count("error: ") == 4 and rendered.count("^") > 4
    assert "    conv(out, 3, stride=strides, padding=1) -> bn -> rleu" in rendered


def test_other_errors_come_with_an_error_of_another_kind() -> None:
    """Unknown names are independent of the shape error the elaborator meets first."""
    err = check_error("network n { input [3, 8, 8]; conv(8, 99) -> linear(num_clases) }")
    assert type(err) is archdsl.ArchShapeError
    assert [o.message for o in err.others] == ["unknown name 'num_clases'"]


def test_reported_up_to_the_limit_with_the_count() -> None:
    text = "network n { input [3, 8, 8]\n" + "".join(f"  relu -> zz{i}\n" for i in range(30)) + "}"
    err = check_error(text)
    assert len(err.others) == MAX_ERRORS - 1 and err.omitted == 30 - MAX_ERRORS
    assert [o.line for o in err.others] == list(range(3, MAX_ERRORS + 2))  # source order
    assert err.render().endswith(f"\n30 errors (the first {MAX_ERRORS} shown)")


def test_the_cli_prints_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.arch"
    spec.write_text(textwrap.dedent(SEVERAL).lstrip("\n"), encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count(f"{spec}:") == 4 and err.endswith("\n4 errors\n")


def test_errors_in_an_imported_file_show_its_lines(tmp_path: Path) -> None:
    (tmp_path / "lib.arch").write_text("block b {\n  conv(8, 3) -> rleu\n}\n", encoding="utf-8")
    spec = tmp_path / "main.arch"
    spec.write_text('import "lib.arch"\nnetwork n { input [3, 8, 8]; b -> zz }\n', "utf-8")
    with pytest.raises(archdsl.ArchNameError) as info:
        archdsl.check_file(spec)
    err = info.value
    assert (err.path, err.message) == (str(tmp_path / "lib.arch"), err.message)
    (other,) = err.others
    assert (other.path, other.line, other.column) == (str(spec), 2, 35)
    assert "  network n { input [3, 8, 8]; b -> zz }" in err.render()
    assert "    conv(8, 3) -> rleu" in err.render()


def test_a_long_chain_of_blocks_costs_no_stack() -> None:
    """Blocks are visited from a worklist: 3,000 blocks calling one another (beyond the
    elaborator's block limit, which fails first) still find the typo in the last."""
    n = 3000
    blocks = [f"block b{i} {{ b{i + 1} }}" for i in range(n)] + [f"block b{n} {{ rleu }}"]
    text = "\n".join([*blocks, "network n { input [3, 8, 8]; b0 }"])
    err = check_error(text)
    assert type(err) is archdsl.ArchLimitError
    assert [(o.line, o.message) for o in err.others] == [
        (n + 1, "unknown op or block 'rleu'; did you mean 'relu'?")
    ]


def test_nesting_at_the_limit_is_walked() -> None:
    from archdsl.frontend.parser import MAX_NESTING

    depth = MAX_NESTING - 2  # inside the network's braces, with the innermost seq's own
    text = "network n { input [3, 8, 8]; " + "seq { " * depth + "rleu" + " }" * depth + " -> zz }"
    err = check_error(text)
    assert err.message.startswith("unknown op or block 'rleu'")
    assert [o.message for o in err.others] == ["unknown op or block 'zz'"]
    lint_only = text.replace("seq {", "if true {").replace("rleu", "relu")
    assert [w.message for w in archdsl.lint(lint_only + "\nnetwork m { input [3]; relu }")] == [
        "unknown op or block 'zz'"
    ]


# ---- what is left to the elaborator ------------------------------------------------------

MAY_NOT_RUN = {
    "untaken branch": "network n(deep = false) { input [3, 8, 8]; if deep { rleu } }",
    "else branch": "network n { input [3, 8, 8]; if true { relu } else { rleu } }",
    "loop body": "network n { input [3, 8, 8]; for i in [] { conv(widht, 1) } }",
    "computed repetition": "network n(k = 0) { input [3, 8, 8]; rleu x k }",
    "repeated zero times": "network n { input [3, 8, 8]; rleu x 0 }",
    "ternary arm": "network n { input [3, 8, 8]; conv(8 if true else widht, 1) }",
    "right of or": "network n { input [3, 8, 8]; if true or deep { relu } }",
    "comprehension over nothing": "network n { input [3, 8, 8]; conv(8 + sum([zz for i in []]), 1) }",
    "comprehension filter": (
        "network n { input [3, 8, 8]; conv(8 + sum([i for i in [] if i > lim]), 1) }"
    ),
    "filtered out": "network n { input [3, 8, 8]; conv(8 + sum([zz for i in [1] if false]), 1) }",
    "unused block": "block spare { rleu }\nnetwork n { input [3, 8, 8]; relu }",
    "block in a branch": (
        "block spare { rleu }\nnetwork n { input [3, 8, 8]; if false { spare } }"
    ),
    "replaced block default": "block b(k = widht) { conv(k, 1) }\nnetwork n { input [3, 8, 8]; b(4) }",
    "another network": "network m { input [3, 8, 8]; rleu }\nnetwork n { input [3, 8, 8]; relu }",
}


@pytest.mark.parametrize("kind", sorted(MAY_NOT_RUN))
def test_code_that_does_not_run_is_not_an_error_but_a_warning(kind: str) -> None:
    text = MAY_NOT_RUN[kind]
    archdsl.check(text)  # valid, as it always was
    assert certain(text) == []
    warnings = archdsl.lint(text, path="t.arch")
    (warning,) = [w for w in warnings if w.code == "unknown-name"]
    assert warning.message.startswith(("unknown name", "unknown op or block"))


def test_a_default_the_caller_replaces_is_not_evaluated() -> None:
    text = "network n(c = widht) { input [3, 8, 8]; conv(c, 1) }"
    archdsl.check(text, c=4)
    assert certain(text, c=4) == []
    assert [e.message for e in certain(text)] == ["unknown name 'widht'"]
    alias = text + "\nnetwork m = n(4)"
    archdsl.check(alias)
    assert certain(alias) == []


def test_a_layer_named_by_a_local_is_the_elaborators_to_judge() -> None:
    """A parameter may hold a block: ``inner`` is resolved when the block is elaborated."""
    text = "block act { relu }\nblock wrap(inner) { conv(8, 1) -> inner }\n"
    graph = archdsl.check(text + "network n { input [3, 8, 8]; wrap(act) }")
    assert [n.op for n in graph.nodes()] == ["input", "conv", "relu"]
    bad = text + "network n { input [3, 8, 8]; wrap(3) }"
    err = check_error(bad)
    assert err.message.startswith("unknown op or block 'inner'") and err.others == []
    assert certain(bad) == []


# ---- never for a valid spec --------------------------------------------------------------

SCOPED = """
import "lib/resnet.arch"
base = 16
block widen(width, n = 2, first = width * 2, c = in.c) {
  k = width + first + c
  for i in range(n) {
    j = i + k
    unit{j}: conv(j + base, 1) -> bn
  }
  conv([w * 2 for w in [width, n]][0], 1) -> basic(in.c)
}
network net(width = base, deep = true) {
  input [3, 32, 32]
  init conv.weight = kaiming_normal(mode="fan_out")
  s = width * 2
  widen(s) -> if deep { widen(s, n=1) } else { relu } -> side aux: relu
  -> add { widen(in.c); () } -> global_avgpool(flatten=true) -> linear(10 if deep else 5)
}
network small = net(width=8) scaled(width=0.5)
"""


def test_lexical_scopes_resolve_every_kind_of_binding() -> None:
    archdsl.check(textwrap.dedent(SCOPED))
    module = module_of(SCOPED)
    assert unknown_names(module) == []
    for name in ("net", "small"):
        assert certain_errors(module, module.names[name]) == []


def test_bindings_in_source_order() -> None:
    module = module_of(SCOPED)
    found = [
        (b.name, b.kind, b.span.line, b.span.column)
        for b in bindings(module, module.names["widen"].defn)
    ]
    assert found == [
        ("width", "parameter", 3, 13),
        ("n", "parameter", 3, 20),
        ("first", "parameter", 3, 27),
        ("c", "parameter", 3, 46),
        ("k", "local", 4, 3),
        ("i", "loop variable", 5, 7),
        ("j", "local", 6, 5),
        ("w", "comprehension variable", 9, 19),
    ]


def _bundled() -> list[Path]:
    root = bundled_spec_root()
    return sorted([*root.glob("*.arch"), *root.glob("lib/*.arch")])


@pytest.mark.parametrize("path", _bundled(), ids=lambda p: p.name)
def test_bundled_specs_have_no_unknown_names(path: Path) -> None:
    module = Loader().load_file(path)
    assert unknown_names(module) == []
    for name, value in module.names.items():
        if isinstance(value, NetworkRef):
            assert certain_errors(module, value) == [], name
