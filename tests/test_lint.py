"""The linter (``archdsl.lint``, ``archdsl check``): each rule, its location, what it leaves
alone, the bundled specs (no warnings), and the CLI (warnings on stderr, exit 0 unless
``--strict``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import archdsl
from archdsl.elaborate.loader import bundled_spec_root
from archdsl.passes.lint import LintWarning
from archdsl_cli.main import main


def warnings_of(text: str, **kwargs: object) -> list[tuple[str, int, int, str]]:
    """(code, line, column, message) of each warning for ``text`` (dedented)."""
    found = archdsl.lint(textwrap.dedent(text).lstrip("\n"), path="t.arch", **kwargs)
    assert all(isinstance(w, LintWarning) and w.span.path == "t.arch" for w in found)
    return [(w.code, w.span.line, w.span.column, w.message) for w in found]


def codes(text: str, **kwargs: object) -> list[str]:
    return [w[0] for w in warnings_of(text, **kwargs)]


# ---- unused blocks -----------------------------------------------------------------------


def test_unused_block() -> None:
    assert warnings_of("""
        block used { relu }
        block   spare(n) { conv(n, 1) }
        network net { input [3, 8, 8]; used }
    """) == [("unused-block", 2, 9, "block 'spare' is never used")]


def test_block_used_only_by_another_block_or_in_a_dead_branch_is_used() -> None:
    assert (
        codes("""
        block inner { relu }
        block outer { inner }
        block maybe { relu }
        network net(flag = false) { input [3, 8, 8]; outer -> if flag { maybe } }
    """)
        == []
    )


def test_library_blocks_are_not_unused() -> None:
    """A file without networks is a library: its blocks are for importers."""
    assert codes("block b { relu }\nblock c { relu }") == []


def test_imported_unused_blocks_are_not_reported() -> None:
    assert codes('import "lib/resnet.arch"\nnetwork n { input [3, 8, 8]; relu }') == []


def test_underscore_block_is_exempt() -> None:
    assert codes("block _helper { relu }\nnetwork n { input [3, 8, 8]; relu }") == []


# ---- unused parameters ---------------------------------------------------------------------


def test_unused_block_parameter() -> None:
    assert warnings_of("""
        block b(out, stride = 1, spare = 2) { conv(out, 3, stride=stride) }
        network n { input [3, 8, 8]; b(4) }
    """) == [("unused-parameter", 1, 26, "parameter 'spare' of block 'b' is never used")]


def test_unused_network_parameter() -> None:
    assert warnings_of("""
        network n(num_classes = 10, dropout = 0.5) {
          input [3, 8, 8]
          global_avgpool(flatten=true) -> linear(num_classes)
        }
    """) == [("unused-parameter", 1, 29, "parameter 'dropout' of network 'n' is never used")]


@pytest.mark.parametrize(
    "use",
    [
        "conv(k, 3)",  # an argument
        "conv(4, 3) x k",  # a repetition count
        "if k > 1 { relu }",  # a condition
        "for i in range(k) { relu }",  # an iterable
        "layer{k}: relu",  # a label template
        "w = k * 2; conv(w, 1)",  # an assignment
        "seq { add { conv(4, 1); conv([k, 4][1], 1) } }",  # deep inside
    ],
)
def test_parameter_read_anywhere_is_used(use: str) -> None:
    assert codes(f"block b(k = 2) {{ {use} }}\nnetwork n {{ input [3, 8, 8]; b }}") == []


def test_parameter_read_by_a_later_default_is_used() -> None:
    assert codes("block b(k = 2, j = k) { conv(j, 1) }\nnetwork n { input [3, 8, 8]; b }") == []


def test_underscore_parameter_is_exempt() -> None:
    assert codes("block b(_unused = 1) { relu }\nnetwork n { input [3, 8, 8]; b }") == []


# ---- shadowed names -------------------------------------------------------------------------


def test_parameter_hides_a_top_level_constant() -> None:
    assert warnings_of("""
        width = 64
        block b(width) { conv(width, 1) }
        network n { input [3, 8, 8]; b(8) }
    """) == [
        (
            "shadowed-name",
            2,
            9,
            "parameter 'width' hides the top-level constant 'width' defined at t.arch:1:1",
        )
    ]


def test_local_assignment_hides_a_block() -> None:
    assert warnings_of("""
        block stem { relu }
        network n {
          input [3, 8, 8]
          stem
          stem = 3
        }
    """) == [
        (
            "shadowed-name",
            5,
            3,
            "local 'stem' hides the top-level block 'stem' defined at t.arch:1:1",
        )
    ]


def test_loop_variable_hides_a_builtin() -> None:
    assert warnings_of("""
        network n {
          input [3, 8, 8]
          for   max in [1, 2] { relu }
        }
    """) == [
        ("shadowed-name", 3, 9, "loop variable 'max' has the name of the builtin function 'max()'")
    ]


def test_local_hides_a_builtin_and_an_imported_name() -> None:
    assert codes("""
        import "lib/resnet.arch"
        block b { len = 3; basic = 4; conv(len + basic, 1) }
        network n { input [3, 8, 8]; b }
    """) == ["shadowed-name", "shadowed-name"]


def test_ordinary_locals_are_not_shadowing() -> None:
    assert (
        codes("""
        base = 8
        block b(planes) { width = planes * base; conv(width, 1) }
        network n { input [3, 8, 8]; b(2) }
    """)
        == []
    )


# ---- conv with bias before batch norm ----------------------------------------------------------


def test_conv_with_bias_then_bn() -> None:
    assert warnings_of("""
        network n {
          input [3, 8, 8]
          conv(8, 3, padding=1) -> bn -> relu
        }
    """) == [
        (
            "conv-bias-before-bn",
            3,
            3,
            "conv has a bias but feeds batch norm, which cancels it; write bias=false",
        )
    ]


@pytest.mark.parametrize(
    "layers",
    [
        "conv(8, 3, bias=true) -> batchnorm",
        "conv(8, 3, 1, 0, 1, 1, true) -> bn",  # positional bias
        "conv(8, 3, bias=1 == 1) -> bn",  # computed: found in the graph
        "conv(8, 3)\n  bn",  # successive statements
        "seq { conv(8, 3) } -> bn",  # across a namespace
        "add { conv(8, 3) -> bn; conv(8, 3) -> bn }",  # in branches
        "c: conv(8, 3) -> b: bn",  # labelled
        "conv(8, 3) -> bn x 2",  # repeated: the first bn follows the conv
    ],
)
def test_conv_bias_before_bn_is_found(layers: str) -> None:
    assert codes(f"network n {{\n  input [3, 8, 8]\n  {layers}\n}}") in (
        ["conv-bias-before-bn"],
        ["conv-bias-before-bn"] * 2,
    )


def test_conv_in_a_block_followed_by_bn_outside_it() -> None:
    assert warnings_of("""
        block c { conv(8, 3) }
        network n { input [3, 8, 8]; c -> bn }
    """) == [
        (
            "conv-bias-before-bn",
            1,
            11,
            "conv has a bias but feeds batch norm, which cancels it; write bias=false",
        )
    ]


def test_library_blocks_are_linted_without_a_network() -> None:
    assert codes("block c { conv(8, 3) -> bn -> relu }") == ["conv-bias-before-bn"]


@pytest.mark.parametrize(
    "layers",
    [
        "conv(8, 3, bias=false) -> bn",
        "conv(8, 3, 1, 0, 1, 1, false) -> bn",
        "conv(8, 3) -> relu -> bn",
        "conv(8, 3) -> side aux: bn -> relu",  # the conv also feeds relu
        "conv(8, 3) -> add { bn; identity }",  # ... and the add
        "conv(8, 3)",  # the network's output
        "linear_ish: conv(8, 8) -> groupnorm(2)",
    ],
)
def test_conv_bias_before_bn_leaves_alone(layers: str) -> None:
    assert codes(f"network n {{\n  input [3, 8, 8]\n  {layers}\n}}") == []


def test_a_block_named_like_an_op_is_not_the_op() -> None:
    assert (
        codes("""
        block bn { relu }
        network n { input [3, 8, 8]; conv(8, 3) -> bn }
    """)
        == []
    )


def test_warnings_only_for_the_checked_file(tmp_path: Path) -> None:
    (tmp_path / "lib.arch").write_text("block c(spare) { conv(8, 3) -> bn }\n", encoding="utf-8")
    spec = tmp_path / "main.arch"
    spec.write_text('import "lib.arch"\nnetwork n { input [3, 8, 8]; c(1) }\n', encoding="utf-8")
    assert archdsl.lint(spec) == []
    assert {w.code for w in archdsl.lint(tmp_path / "lib.arch")} == {
        "unused-parameter",
        "conv-bias-before-bn",
    }


# ---- the API ----------------------------------------------------------------------------------


def test_lint_takes_a_path_or_text(tmp_path: Path) -> None:
    text = "block spare { relu }\nnetwork n { input [3, 8, 8]; relu }\n"
    spec = tmp_path / "s.arch"
    spec.write_text(text, encoding="utf-8")
    by_path, by_name, by_text = archdsl.lint(spec), archdsl.lint(str(spec)), archdsl.lint(text)
    assert [str(w) for w in by_path] == [f"{spec}:1:7: warning: block 'spare' is never used"]
    assert [str(w) for w in by_name] == [str(w) for w in by_path]
    assert [str(w) for w in by_text] == ["<string>:1:7: warning: block 'spare' is never used"]


def test_lint_raises_the_errors_of_the_text() -> None:
    with pytest.raises(archdsl.ArchSyntaxError):
        archdsl.lint("network n { input [3, 8, 8]; relu relu }")


def test_lint_of_a_network_that_does_not_check_still_lints_the_text() -> None:
    assert codes("""
        block spare { relu }
        network n { input [3, 8, 8]; conv(8, 30) }
    """) == ["unused-block"]


def test_lint_with_parameters_checks_the_network() -> None:
    text = "network n(k = 3) {\n  input [3, 8, 8]\n  conv(8, k, bias=k < 5) -> bn\n}"
    assert codes(text) == ["conv-bias-before-bn"]
    assert codes(text, k=7) == []  # bias=false for this k
    with pytest.raises(archdsl.ArchShapeError):
        archdsl.lint(text, k=30)


def test_warnings_are_sorted_and_unique() -> None:
    found = archdsl.lint(
        textwrap.dedent("""\
        block b(x1, x2) { conv(8, 1) -> bn }
        block a { b(1, 2) }
        network n { input [3, 8, 8]; conv(8, 1) -> bn -> a }
    """)
    )
    keys = [(w.span.line, w.span.column, w.code) for w in found]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_lint_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, archdsl; archdsl.lint('network n { input [3, 8, 8]; conv(8, 1) -> bn }');"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the bundled specs ---------------------------------------------------------------------------

BUNDLED = sorted([*bundled_spec_root().glob("*.arch"), *bundled_spec_root().glob("lib/*.arch")])


@pytest.mark.parametrize("spec", BUNDLED, ids=lambda p: str(p.relative_to(bundled_spec_root())))
def test_bundled_specs_have_no_warnings(spec: Path) -> None:
    assert [str(w) for w in archdsl.lint(spec)] == []


# ---- the command line ------------------------------------------------------------------------------

WARNED = "block spare { relu }\nnetwork n { input [3, 8, 8]; conv(4, 3) -> bn }\n"


def test_check_prints_warnings_and_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "w.arch"
    spec.write_text(WARNED, encoding="utf-8")
    assert main(["check", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert "network     n" in out
    assert err.splitlines() == [
        f"{spec}:1:7: warning: block 'spare' is never used",
        f"{spec}:2:30: warning: conv has a bias but feeds batch norm, which cancels it; "
        "write bias=false",
    ]


def test_check_strict_fails_on_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "w.arch"
    spec.write_text(WARNED, encoding="utf-8")
    assert main(["check", str(spec), "--strict"]) == 1
    assert "warning: block 'spare'" in capsys.readouterr().err
    clean = tmp_path / "clean.arch"
    clean.write_text(
        "network n { input [3, 8, 8]; conv(4, 3, bias=false) -> bn }\n", encoding="utf-8"
    )
    assert main(["check", str(clean), "--strict"]) == 0
    assert capsys.readouterr().err == ""


def test_check_strict_on_a_bundled_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "resnet50", "--strict"]) == 0
    assert capsys.readouterr().err == ""


def test_check_lints_the_picked_network_with_its_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "p.arch"
    spec.write_text(
        "network n(k = 3) {\n  input [3, 8, 8]\n  conv(8, k, bias=k < 5) -> bn\n}\n",
        encoding="utf-8",
    )
    assert main(["check", str(spec), "--set", "k=7", "--strict"]) == 0
    assert main(["check", str(spec), "--strict"]) == 1
    assert "3:3: warning: conv has a bias" in capsys.readouterr().err


def test_check_parses_and_elaborates_each_network_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from archdsl.elaborate.elaborator import Elaborator
    from archdsl.elaborate.loader import Loader

    spec = tmp_path / "two.arch"
    spec.write_text(
        "network a { input [3, 8, 8]; conv(8, 3) }\n"
        "network b(k = 3) { input [3, 8, 8]; conv(8, k, bias=k < 5) -> bn }\n",
        encoding="utf-8",
    )
    elaborated: list[str] = []
    loaded: list[str] = []
    network, load_file = Elaborator.network, Loader.load_file
    monkeypatch.setattr(
        Elaborator,
        "network",
        lambda self, ref, params: elaborated.append(ref.defn.name) or network(self, ref, params),
    )
    monkeypatch.setattr(
        Loader, "load_file", lambda self, path: loaded.append(str(path)) or load_file(self, path)
    )
    assert main(["check", str(spec)]) == 0
    assert sorted(elaborated) == ["a", "b"] and loaded == [str(spec)]
    assert "2:37: warning: conv has a bias" in capsys.readouterr().err  # the checked graph, linted


def test_errors_still_win_over_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "e.arch"
    spec.write_text(
        "block spare { relu }\nnetwork n { input [3, 8, 8]; conv(8, 30) }\n", encoding="utf-8"
    )
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert ": error: " in err and "warning" not in err


def test_doctest() -> None:
    import doctest

    import archdsl.passes.lint

    assert doctest.testmod(archdsl.passes.lint).failed == 0
