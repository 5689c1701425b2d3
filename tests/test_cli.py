"""The command line: reports, saving, ``--set``, spec names, exit codes, and no torch for
``check``.

Most tests call :func:`archdsl_cli.main.main` in-process; a few run the installed
``archdsl`` console script in a subprocess, as a user would. A spec read from standard
input and the parsing of ``--set`` values are tested in test_cli_input.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import archdsl
from archdsl.elaborate.loader import Loader
from archdsl_cli.main import main
from clirun import BAD_SPEC, CARET, LOCATION, run

RESNET18_PARAMS = "11,689,512"
RESNET18_10_CLASSES_PARAMS = "11,181,642"  # 11,689,512 - 512 * 990 - 990


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.arch"
    path.write_text(BAD_SPEC, encoding="utf-8")
    return path


# ---- compile, check, list ---------------------------------------------------------


def test_compile_resnet18_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compile", "specs/resnet18.arch")
    assert (code, err) == (0, "")
    assert re.search(r"^network +resnet18 ", out, re.M)
    assert "[N, 3, 224, 224] -> [N, 1000]" in out
    assert re.search(rf"^parameters +{RESNET18_PARAMS}$", out, re.M)
    assert re.search(r"^check +\d+(\.\d+)? m?s$", out, re.M)
    assert re.search(r"^build +\d+(\.\d+)? m?s$", out, re.M)


def test_compile_saves_a_loadable_state_dict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import torch

    target = tmp_path / "model.pt"
    code, out, _ = run(capsys, "compile", "resnet18", "-o", str(target))
    assert code == 0
    assert f"saved       {target}" in out
    state = torch.load(target, weights_only=True)
    model = archdsl.load("resnet18")
    model.load_state_dict(state)  # strict: same keys, same shapes
    assert state["fc.weight"].shape == (1000, 512)
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])


def test_set_changes_the_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compile", "resnet18", "--set", "num_classes=10")
    assert code == 0
    assert "[N, 3, 224, 224] -> [N, 10]" in out
    assert RESNET18_10_CLASSES_PARAMS in out


def test_check_prints_the_report_without_building(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "resnet18", "--set", "resolution=160")
    assert code == 0
    assert "[N, 3, 160, 160] -> [N, 1000]" in out
    assert RESNET18_PARAMS in out  # counted from the graph, without torch
    assert "build" not in out


SEVERAL_NETWORKS = """
block head(n) { global_avgpool(flatten=true) -> linear(n) }
network tiny {
  input [3, 8, 8]
  conv(4, 11) -> head(10)
}
network family(width) {
  input [3, 32, 32]
  conv(width, 3) -> head(10)
}
network narrow = family(width=8)
network flat {
  input [3, 8, 8]
  conv(4, 3) -> linear(3)
}
"""


def test_check_checks_every_network_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`archdsl check FILE` checks each network the file defines, not only the last one
    (compile's): an error in any fails it, all reported; a network whose parameters need
    values (family(width)) is checked through the networks that give them."""
    path = tmp_path / "several.arch"
    path.write_text(SEVERAL_NETWORKS, encoding="utf-8")
    code, out, err = run(capsys, "check", str(path))
    assert code == 1 and out == ""
    assert err.count(": error: ") == 2 and err.rstrip().endswith("2 errors")
    assert f"{path}:5:3: error: conv (module '0'): output height -2" in err
    assert f"{path}:14:17: error: linear (module '1'): expects flat features" in err
    assert "width" not in err  # family needs a value for width: not checked on its own
    # the last network alone checks; so does another picked by name
    path.write_text(
        SEVERAL_NETWORKS.replace("conv(4, 3) -> linear(3)", "conv(4, 3) -> flatten -> linear(3)")
    )
    code, _, err = run(capsys, "check", str(path))
    assert code == 1 and err.count(": error: ") == 1 and ":5:3: error:" in err
    assert run(capsys, "check", str(path), "--network", "flat")[0] == 0
    assert run(capsys, "check", str(path), "--network", "narrow")[0] == 0
    # all fixed: the report is the last network's, and names the others it checked
    path.write_text(SEVERAL_NETWORKS.replace("conv(4, 11)", "conv(4, 3)").replace(
        "conv(4, 3) -> linear(3)", "conv(4, 3) -> flatten -> linear(3)"))  # fmt: skip
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and out.startswith("network       flat  (")
    assert "\nalso checked  tiny, narrow\n" in out
    code, out, _ = run(capsys, "check", str(path), "--network", "tiny")
    assert code == 0 and "also checked" not in out
    # a file whose last network needs values still says so
    code, _, err = run(capsys, "check", str(path), "--network", "family")
    assert code == 1 and "needs a value for parameter 'width'" in err


def test_check_reports_an_error_in_a_shared_block_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shared.arch"
    path.write_text(
        "block head(n) { linear(n) }\n"
        "network a { input [3, 8, 8]; h: head(10) }\n"
        "network b { input [3, 8, 8]; h: head(10) }\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert err.count(": error: ") == 1 and "2 errors" not in err
    assert "called at " + f"{path}:2:" in err  # the first network's call


def test_several_sets_and_lists(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "check",
        "specs/resnet18.arch",
        "--set",
        "layers=[1, 1, 1, 1]",
        "--set",
        "num_classes=7",
    )
    assert code == 0
    assert "-> [N, 7]" in out
    assert "4,909,383" in out  # one basic block per stage: 5,418,792 - 513,000 + 3,591


def test_list_names_the_bundled_specs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--names")
    assert code == 0
    names = out.splitlines()
    assert "resnet50" in names and "resnet18" in names
    assert names == archdsl.list_specs()


def test_list_gives_parameters_and_the_paper(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    rows = [line.split(maxsplit=2) for line in out.splitlines()]
    assert [r[0] for r in rows] == archdsl.list_specs()
    for name, params, description in rows:
        graph = archdsl.load_graph(name)
        assert int(params.replace(",", "")) == archdsl.count_params(graph), name
        # one line naming the paper: authors and a venue year after the '; '
        assert re.search(r"; .+ (19|20)\d\d$", description), (name, description)
    by_name = {r[0]: r for r in rows}
    assert by_name["resnet50"][1] == "25,557,032"
    assert by_name["alexnet_paper"][1] == "60,965,224"
    assert "He, Zhang, Ren & Sun, CVPR 2016" in by_name["resnet50"][2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"archdsl {archdsl.__version__}")


def test_bundled_name_when_no_such_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "resnet50")
    assert code == 0
    assert re.search(r"^network +resnet50 ", out, re.M)
    assert "25,557,032" in out


def test_a_file_wins_over_a_bundled_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet50").write_text(
        "network mine {\n  input [3, 8, 8]\n  conv(4, 3)\n}\n", encoding="utf-8"
    )
    code, out, _ = run(capsys, "check", "resnet50")
    assert code == 0
    assert re.search(r"^network +mine ", out, re.M)
    assert "[N, 3, 8, 8] -> [N, 4, 6, 6]" in out


def test_network_picks_one_of_several(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "two.arch"
    spec.write_text(
        textwrap.dedent("""\
        network first {
          input [3, 8, 8]
          conv(4, 3)
        }
        network second {
          input [16]
          linear(2)
        }
    """),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "check", str(spec))
    assert code == 0 and "[N, 16] -> [N, 2]" in out
    code, out, _ = run(capsys, "check", str(spec), "--network", "first")
    assert code == 0 and "[N, 3, 8, 8] -> [N, 4, 6, 6]" in out


# ---- errors and exit codes ----------------------------------------------------------


def test_spec_error_exits_1_with_location_and_caret(
    capsys: pytest.CaptureFixture[str], bad_spec: Path
) -> None:
    code, out, err = run(capsys, "check", str(bad_spec))
    assert (code, out) == (1, "")
    first = err.splitlines()[0]
    m = LOCATION.match(first)
    assert m and m["path"] == str(bad_spec) and (m["line"], m["col"]) == ("3", "45")
    assert "linear takes at most 2 positional arguments, got 3" in first
    assert err.splitlines()[1] == "    conv(4, 3) -> flatten -> linear(10, true, 5)"
    assert CARET.search(err)
    assert "Traceback" not in err


def test_compile_reports_spec_errors_like_check(
    capsys: pytest.CaptureFixture[str], bad_spec: Path
) -> None:
    assert main(["check", str(bad_spec)]) == 1
    _, check_err = capsys.readouterr()
    assert main(["compile", str(bad_spec)]) == 1
    _, compile_err = capsys.readouterr()
    assert compile_err == check_err


def test_unknown_network_parameter_is_a_spec_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "resnet18", "--set", "num_class=10")
    assert code == 1
    assert "has no parameter 'num_class' (set by the caller); did you mean 'num_classes'?" in err
    assert LOCATION.match(err)


def test_an_error_a_set_value_causes_names_the_value_and_the_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """resnet18 is an alias of the library's resnet: the error is in the library, where
    ``layers`` is first read; its notes give the value the user set and the user's spec line."""
    code, _, err = run(capsys, "check", "resnet18", "--set", "layers=3")
    assert code == 1
    assert "error: len() needs a list, got int" in err
    assert "  note: layers=3 set by the caller\n" in err
    assert re.search(r"note: in network 'resnet' called at \S*resnet18\.arch:\d+:\d+$", err, re.M)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["compile"], "required: SPEC"),
        (["check", "resnet18", "--bogus"], "unrecognized arguments"),
        (["check", "resnet18", "-o", "m.pt"], "unrecognized arguments"),
        (["compile", "resnet18", "-o", "model.txt"], "supported: .py"),
        (["compile", "resnet18", "-o", "model"], "supported: .py"),
        (["check", "resnet5"], "did you mean 'resnet50'?"),
        (["check", "no/such/spec.arch"], "no such spec file: no/such/spec.arch"),
        (["check", "."], "is not a spec file"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_unwritable_output_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "missing" / "model.pt"
    code, _, err = run(capsys, "compile", "resnet18", "-o", str(target))
    assert code == 1
    assert err.strip() == (
        f"archdsl compile: error: cannot write {target}: no such directory {target.parent}"
    )


def test_an_output_that_is_a_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "model.pt"
    target.mkdir()
    code, _, err = run(capsys, "compile", "resnet18", "-o", str(target))
    assert (code, err.strip()) == (
        1,
        f"archdsl compile: error: cannot write {target}: it is a directory",
    )


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (RecursionError("maximum recursion depth exceeded"), 1, "nested too deeply"),
        (MemoryError(), 1, "out of memory"),
        (ValueError("boom"), 3, "internal error: ValueError: boom"),
    ],
)
def test_no_traceback_for_unexpected_failures(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    code: int,
    message: str,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.delenv("ARCHDSL_DEBUG", raising=False)
    monkeypatch.setattr(Loader, "load_file", fail)
    got, out, err = run(capsys, "check", "resnet18")
    assert got == code
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_torch_build_failure_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(archdsl, "build", fail)
    code, _, err = run(capsys, "compile", "resnet18")
    assert code == 1
    assert err.strip().startswith(
        f"archdsl compile: error: cannot build resnet18: {RESNET18_PARAMS}"
    )
    assert "can't allocate memory" in err


# ---- subprocesses: no torch for check; the real console script --------------------


def test_check_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from archdsl_cli.main import main\n"
        "assert main(['check', 'resnet50', '--set', 'num_classes=10']) == 0\n"
        "assert 'torch' not in sys.modules, 'check imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "-> [N, 10]" in proc.stdout


def _script() -> str:
    script = shutil.which("archdsl")
    if script is None:
        pytest.skip("the archdsl console script is not installed (pip install -e .)")
    return script


def test_console_script_compile() -> None:
    proc = subprocess.run(
        [_script(), "compile", "resnet18"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "[N, 3, 224, 224] -> [N, 1000]" in proc.stdout
    assert RESNET18_PARAMS in proc.stdout
    # torch's import, most of a fresh process's time, is its own row, not the build's
    rows = [line.split()[0] for line in proc.stdout.splitlines()]
    assert rows[rows.index("check") :][:3] == ["check", "import", "build"], proc.stdout
    assert re.search(r"^import torch +\d+(\.\d+)? m?s$", proc.stdout, re.M), proc.stdout


def test_console_script_exit_codes(bad_spec: Path) -> None:
    proc = subprocess.run(
        [_script(), "check", str(bad_spec)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert LOCATION.match(proc.stderr) and CARET.search(proc.stderr)
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [_script(), "compile", "resnet18", "-o", "model.txt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "supported: .py" in proc.stderr


def test_compile_refuses_a_huge_network_with_how_to_override(tmp_path, capsys):
    spec = tmp_path / "big.arch"
    spec.write_text("network n { input [4096]; fc: linear(4096) -> linear(4096) }\n")
    code, _, err = run(capsys, "compile", str(spec), "--max-params", "1000")
    assert code == 1
    assert "--max-params" in err and "33,562,624 parameters" in err
    code, out, _ = run(capsys, "compile", str(spec), "--max-params", "100000000")
    assert code == 0


def test_summary_command_reports_params_macs_and_receptive_field(capsys):
    code, out, _ = run(capsys, "summary", "resnet50", "--depth", "1")
    assert code == 0
    assert "25,557,032" in out and "4.09 GMACs" in out
    layer3 = next(line for line in out.splitlines() if line.startswith("layer3 "))
    assert layer3.split()[-2:] == ["267", "16"]


def test_summary_json_and_usage_errors(capsys):
    import json

    code, out, _ = run(capsys, "summary", "resnet18", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["params"] == 11_689_512 and data["flops"] == 2 * data["macs"]
    assert any(layer["name"] == "layer3" for layer in data["layers"])
    code, _, err = run(capsys, "summary", "resnet18", "--batch", "0")
    assert code == 2 and "batch" in err


def test_render_command_writes_the_image(tmp_path, capsys):
    out_file = tmp_path / "resnet18.dot"
    code, out, _ = run(capsys, "render", "resnet18", "-o", str(out_file))
    assert code == 0 and out_file.is_file()
    assert "layer3" in out_file.read_text()
    code, _, err = run(capsys, "render", "resnet18", "-o", str(tmp_path / "x.nope"))
    assert code == 2 and "format" in err


def test_search_path_flag_allows_imports_from_another_folder(tmp_path, capsys):
    (tmp_path / "lib").mkdir()
    (tmp_path / "net").mkdir()
    (tmp_path / "lib" / "blocks.arch").write_text("block blk { relu }\n")
    spec = tmp_path / "net" / "n.arch"
    spec.write_text('import "blocks.arch"\nnetwork n { input [3]; blk }\n')
    code, _, err = run(capsys, "check", str(spec))
    assert code == 1 and "cannot find" in err
    code, out, _ = run(capsys, "check", str(spec), "-I", str(tmp_path / "lib"))
    assert code == 0 and "[N, 3] -> [N, 3]" in out
