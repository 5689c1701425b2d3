"""Imports and no code execution: a spec is untrusted input.

Imports nest at most ``MAX_IMPORT_DEPTH`` deep, a cycle is an error at the import that
closes it, and a file imported twice loads once. Python-looking payloads are syntax or name
errors and run nothing, labels cannot name module internals, and the package never calls
``eval``, ``exec`` or ``__import__``. Imports read only under the spec roots (the entry
file's folder, the search path, the bundled library), whatever ``..``, absolute paths and
symlinks say. Last: archdsl leaves Python's recursion limit alone, and the tests' time
limit leaves no timer behind.
"""

from __future__ import annotations

import ast as pyast
import contextlib
import io
import os
import signal
import sys
from pathlib import Path

import pytest
from timelimit import Hang

import archdsl
from archdsl.elaborate.loader import MAX_IMPORT_DEPTH, bundled_spec_root
from archdsl_cli.main import main
from limitcheck import NET, error_of, within

PACKAGE = Path(archdsl.__file__).resolve().parent


# ---- imports: depth, cycles --------------------------------------------------------------------


def test_import_depth_limit(tmp_path: Path) -> None:
    n = MAX_IMPORT_DEPTH + 5
    for i in range(n):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}.arch"\n', encoding="utf-8")
    (tmp_path / f"m{n}.arch").write_text("block b { relu }\n", encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "m0.arch"\nnetwork n { input [3, 8, 8]; b }\n', encoding="utf-8")
    with pytest.raises(
        archdsl.ArchLimitError, match=f"imports nested deeper than {MAX_IMPORT_DEPTH}"
    ) as info:
        archdsl.check_file(main_spec)
    # main.arch and m0 ... m30 are open: m30's import of m31 is the one too deep
    assert info.value.path == str(tmp_path / f"m{MAX_IMPORT_DEPTH - 2}.arch")
    assert (info.value.line, info.value.column) == (1, 1)


def test_import_depth_at_the_limit(tmp_path: Path) -> None:
    n = MAX_IMPORT_DEPTH - 2  # main.arch is the first level
    for i in range(n):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}.arch"\n', encoding="utf-8")
    (tmp_path / f"m{n}.arch").write_text("block b { relu }\n", encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "m0.arch"\nnetwork n { input [3, 8, 8]; b }\n', encoding="utf-8")
    archdsl.check_file(main_spec)


def test_import_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.arch").write_text('import "b.arch"\nblock a { relu }\n', encoding="utf-8")
    (tmp_path / "b.arch").write_text('block b { relu }\nimport "a.arch"\n', encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "a.arch"\nnetwork n { input [3, 8, 8]; a }\n', encoding="utf-8")
    with pytest.raises(
        archdsl.ArchImportError, match=r"import cycle: a.arch -> b.arch -> a.arch"
    ) as info:
        archdsl.check_file(main_spec)
    assert info.value.path == str(tmp_path / "b.arch")
    assert (info.value.line, info.value.column) == (2, 1)


def test_self_import(tmp_path: Path) -> None:
    spec = tmp_path / "self.arch"
    spec.write_text('import "self.arch"\nnetwork n { input [3, 8, 8]; relu }\n', encoding="utf-8")
    with pytest.raises(archdsl.ArchImportError, match=r"import cycle: self.arch -> self.arch"):
        archdsl.check_file(spec)


def test_diamond_imports_load_once(tmp_path: Path) -> None:
    (tmp_path / "base.arch").write_text("block b { relu }\n", encoding="utf-8")
    (tmp_path / "l.arch").write_text('import "base.arch"\n', encoding="utf-8")
    (tmp_path / "r.arch").write_text('import "base.arch"\n', encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text(
        'import "l.arch"\nimport "r.arch"\nnetwork n { input [3, 8, 8]; b }\n', encoding="utf-8"
    )
    archdsl.check_file(main_spec)


# ---- no code execution ---------------------------------------------------------------------------

SENTINEL = "/tmp/archdsl-pwned"

PAYLOADS = {
    "__import__": f'__import__("os").system("touch {SENTINEL}")',
    "__import__ call": '__import__("os")',
    "eval": 'eval("1 + 1")',
    "exec": 'exec("import os")',
    "compile": 'compile("1", "f", "eval")',
    "open": f'open("{SENTINEL}", "w")',
    "getattr": 'getattr(1, "__class__")',
    "attribute of a literal": "(1).__class__",
    "dunder chain": "().__class__.__bases__[0].__subclasses__()",
    "attribute of a name": "a.__class__",
    "attribute of a string": '"x".join',
    "format method": '"{}".format(1)',
    "f-string": 'f"{1 + 1}"',
    "percent format": '"%s" % 1',
    "lambda": "lambda: 1",
    "lambda with args": "(lambda a: a)(1)",
    "dict": '{"a": 1}',
    "set": "{1}",
    "walrus": "(b := 1)",
    "starred": "[*range(3)]",
    "keyword argument to a builtin": "max(1, key=1)",
    "builtins": "__builtins__",
    "globals": "globals()",
    "locals": "locals()",
    "vars": "vars()",
    "dir": "dir()",
    "breakpoint": "breakpoint()",
    "backslash continuation": "1 + \\\n 1",
    "bytes": 'b"x"',
    "raw string escape": r'"\x41"',
    "semicolon import": "1; import os",
    "not a name": "$HOME",
    "backticks": "`id`",
    "shell": "$(id)",
    "class": "class A: pass",
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
@pytest.mark.parametrize("where", ["constant", "argument", "layer"])
def test_python_payloads_are_syntax_or_name_errors(name: str, where: str) -> None:
    payload = PAYLOADS[name]
    if where == "constant":
        text = f"a = 1\nv = {payload}\n" + NET.format("relu")
    elif where == "argument":
        text = "a = 1\n" + NET.format(f"conv({payload}, 3)")
    else:
        text = "a = 1\n" + NET.format(f"relu -> {payload}")
    err = error_of(text)
    allowed = (archdsl.ArchSyntaxError, archdsl.ArchNameError, archdsl.ArchTypeError)
    assert isinstance(err, allowed), f"{type(err).__name__}: {err}"
    if isinstance(err, archdsl.ArchTypeError):  # only for values the language has
        assert any(m in err.message for m in ("has no attribute", "cannot apply", "keyword")), (
            err.message
        )
    assert err.line >= 2
    assert not os.path.exists(SENTINEL)


@pytest.mark.parametrize(
    "label",
    [
        "__class__",
        "__init__",
        "__dict__",
        "__getattr__",
        "__reduce__",
        "__module__",
        "_modules",
        "_parameters",
        "_buffers",
        "_code",
    ],
)
def test_labels_cannot_name_module_internals(label: str) -> None:
    import torch

    text = NET.format(f"{label}: conv(4, 3) -> relu")
    try:
        model = archdsl.compile(text)
        model(torch.zeros(1, 3, 8, 8))
    except archdsl.ArchNameError as e:
        assert "reserved" in e.message
        return
    pytest.fail(f"label '{label}' accepted")


@pytest.mark.parametrize(
    "value",
    [
        '__import__("os")',
        'eval("1")',
        "lambda: 1",
        'f"{1}"',
        "x.__class__",
        "(1).__class__",
        'open("/etc/passwd")',
        "$(id)",
        "`id`",
    ],
)
def test_cli_set_values_run_nothing(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "lenet5", "--set", f"num_classes={value}"]) in (1, 2)
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_archdsl_never_calls_eval_exec_or_import() -> None:
    """The package calls no builtin eval/exec/compile/__import__ and no import_module at all
    (torch.fx's code generation does, on code built from checked identifiers only)."""
    builtins = {"eval", "exec", "compile", "__import__"}
    for path in PACKAGE.rglob("*.py"):
        tree = pyast.parse(path.read_text(encoding="utf-8"))
        for node in pyast.walk(tree):
            if not isinstance(node, pyast.Call):
                continue
            func = node.func
            bad = (
                (isinstance(func, pyast.Name) and func.id in builtins)
                or (isinstance(func, pyast.Attribute) and func.attr == "import_module")
                or (
                    isinstance(func, pyast.Attribute)
                    and isinstance(func.value, pyast.Name)
                    and func.value.id == "builtins"
                )
            )
            assert not bad, (
                f"{path.relative_to(PACKAGE)}:{node.lineno} calls {pyast.unparse(func)}()"
            )


# ---- imports: the spec roots -------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``proj/`` (the entry folder: main.arch, lib/blocks.arch, sub/) and ``outside/``
    (secret.arch), side by side."""
    proj, outside = tmp_path / "proj", tmp_path / "outside"
    (proj / "lib").mkdir(parents=True)
    (proj / "sub").mkdir()
    outside.mkdir()
    (proj / "lib" / "blocks.arch").write_text("block b { relu }\n", encoding="utf-8")
    (outside / "secret.arch").write_text("block s { relu }\n", encoding="utf-8")
    return tmp_path


def _spec(path: Path, importing: str, layer: str = "relu") -> Path:
    path.write_text(
        f'import "{importing}"\nnetwork n {{ input [3, 8, 8]; {layer} }}\n', encoding="utf-8"
    )
    return path


def outside_roots(path: Path, **kwargs: object) -> archdsl.ArchImportError:
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.check_file(path, **kwargs)
    err = info.value
    assert "outside the spec roots" in err.message, err.message
    assert "search path" in err.message  # says how to allow it
    assert (err.path, err.line, err.column) == (str(path), 1, 1)
    return err


def test_imports_below_the_entry_folder_are_allowed(tree: Path) -> None:
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "lib/blocks.arch", "b"))


def test_path_traversal_is_refused(tree: Path) -> None:
    outside_roots(_spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s"))


def test_deep_path_traversal_to_system_files_is_refused(tree: Path) -> None:
    err = outside_roots(_spec(tree / "proj" / "main.arch", "../" * 40 + "etc/passwd"))
    assert "root:" not in err.render()  # nothing of the file is shown


def test_traversal_that_comes_back_inside_is_allowed(tree: Path) -> None:
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "../proj/lib/blocks.arch", "b"))


def test_absolute_import_is_refused(tree: Path) -> None:
    target = tree / "proj" / "lib" / "blocks.arch"  # even one inside the roots
    spec = _spec(tree / "proj" / "main.arch", str(target), "b")
    with pytest.raises(archdsl.ArchImportError, match="import path must be relative") as info:
        archdsl.check_file(spec)
    assert (info.value.line, info.value.column) == (1, 1)


def test_symlink_to_a_file_outside_is_refused(tree: Path) -> None:
    (tree / "proj" / "link.arch").symlink_to(tree / "outside" / "secret.arch")
    outside_roots(_spec(tree / "proj" / "main.arch", "link.arch", "s"))


def test_symlinked_folder_pointing_outside_is_refused(tree: Path) -> None:
    (tree / "proj" / "ext").symlink_to(tree / "outside", target_is_directory=True)
    outside_roots(_spec(tree / "proj" / "main.arch", "ext/secret.arch", "s"))


def test_symlink_within_the_roots_is_allowed(tree: Path) -> None:
    (tree / "proj" / "alias.arch").symlink_to(tree / "proj" / "lib" / "blocks.arch")
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "alias.arch", "b"))


def test_search_path_allows_a_folder(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s")
    archdsl.check_file(spec, search_path=[tree / "outside"])
    archdsl.check_file(
        _spec(tree / "proj" / "other.arch", "secret.arch", "s"), search_path=[tree / "outside"]
    )


def test_imported_file_cannot_escape_either(tree: Path) -> None:
    (tree / "proj" / "lib" / "evil.arch").write_text(
        'import "../../outside/secret.arch"\n', encoding="utf-8"
    )
    spec = _spec(tree / "proj" / "main.arch", "lib/evil.arch", "s")
    with pytest.raises(archdsl.ArchImportError, match="outside the spec roots") as info:
        archdsl.check_file(spec)
    assert info.value.path == str(tree / "proj" / "lib" / "evil.arch")


def test_bundled_library_cannot_be_used_to_escape(tree: Path) -> None:
    outside_roots(_spec(tree / "proj" / "main.arch", "lib/../../../../../../../../etc/hostname"))


def test_source_text_imports_resolve_under_the_working_directory(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree / "proj")
    archdsl.check('import "lib/blocks.arch"\nnetwork n { input [3, 8, 8]; b }')
    with pytest.raises(archdsl.ArchImportError, match="outside the spec roots"):
        archdsl.check('import "../outside/secret.arch"\nnetwork n { input [3, 8, 8]; s }')


def test_bundled_library_imports_from_anywhere(tree: Path) -> None:
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "lib/resnet.arch", "basic(3)"))
    assert (bundled_spec_root() / "lib" / "resnet.arch").is_file()


def test_special_files_are_not_read(tree: Path) -> None:
    os.mkfifo(tree / "proj" / "fifo.arch")  # reading would block forever
    with pytest.raises(archdsl.ArchImportError, match="cannot find"):
        with within(5, wall=True):  # blocking on a read would take no CPU time
            archdsl.check_file(_spec(tree / "proj" / "main.arch", "fifo.arch"))


def test_import_of_a_folder(tree: Path) -> None:
    with pytest.raises(archdsl.ArchImportError, match="cannot find"):
        archdsl.check_file(_spec(tree / "proj" / "main.arch", "lib"))


def test_non_utf8_import(tree: Path) -> None:
    (tree / "proj" / "bin.arch").write_bytes(b"block b { relu }\n\xff\xfe\n")
    with pytest.raises(archdsl.ArchImportError, match="not UTF-8"):
        archdsl.check_file(_spec(tree / "proj" / "main.arch", "bin.arch", "b"))


def test_source_with_a_path_imports_like_the_file(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "lib/blocks.arch", "b")
    archdsl.check_file(spec)
    archdsl.check(spec.read_text(encoding="utf-8"), path=str(spec))


def test_symlinked_entry_file(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "lib/blocks.arch", "b")
    (tree / "outside" / "lib").mkdir()
    (tree / "outside" / "lib" / "blocks.arch").write_text("block b { relu }\n", encoding="utf-8")
    link = tree / "outside" / "main.arch"
    link.symlink_to(spec)
    archdsl.check_file(link)


def test_overlong_import_path(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "a" * 5000 + ".arch")
    with pytest.raises(archdsl.ArchImportError):
        archdsl.check_file(spec)


def test_cli_can_allow_a_folder(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s")
    assert main(["check", str(spec), "--search-path", str(tree / "outside")]) == 0


def test_import_refusals_through_the_cli(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:1:1: error: import ")
    assert "Traceback" not in err


def test_recursion_limit_is_untouched() -> None:
    """archdsl does not raise Python's recursion limit to get its work done."""
    before = sys.getrecursionlimit()
    with contextlib.suppress(archdsl.ArchError):
        archdsl.check("v = " + "-" * 5000 + "1\n" + NET.format("relu"))
    assert sys.getrecursionlimit() == before


def test_the_time_limit_interrupts_a_loop_and_leaves_no_timer_behind() -> None:
    before = signal.getsignal(signal.SIGPROF)
    with pytest.raises(Hang), within(0.2):
        while True:
            pass
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGPROF) is before
