"""The other outputs of ``archdsl compile -o``: ``.pt2`` (torch.export), ``.onnx`` (checked
with onnxruntime), and the state_dict as ``.pt``, ``.pth`` or ``.safetensors``; the ``.py``
output has tests of its own (``test_python_output.py``).

Each emitted file is loaded back the way a user would (``torch.export.load``, an
onnxruntime session) and must compute what the compiled module computes, with the
compiled module's weights.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import archdsl
from archdsl.backends.export import FORMATS, export, format_of
from archdsl_cli.main import main as cli
from emitted import MIXED

RES = 64  # resolution for the big networks: small enough to be quick, every stage still runs


@pytest.fixture(scope="module")
def mixed() -> nn.Module:
    torch.manual_seed(0)
    return archdsl.compile(MIXED)


# ---- .pt2, .onnx, .pt -------------------------------------------------------------------


def test_format_of() -> None:
    assert set(FORMATS) == {".py", ".pt2", ".onnx", ".pt", ".pth", ".safetensors"}
    assert format_of("a/B.ONNX") == ".onnx"
    with pytest.raises(ValueError, match="supported: .py, .pt2, .onnx, .pt, .pth, .safetensors"):
        format_of("model.pkl")


def test_the_cli_knows_the_formats_export_writes() -> None:
    # the CLI keeps its own table so that `archdsl check` never imports torch
    from archdsl_cli import main as cli_main

    assert cli_main.SAVE_EXTENSIONS == FORMATS
    assert set(cli_main.STATE_DICT_EXTENSIONS) == {
        e for e, what in FORMATS.items() if "state_dict" in what
    }


def test_pt2_round_trip_with_a_dynamic_batch(mixed: nn.Module, tmp_path: Path) -> None:
    path = archdsl.export(mixed, tmp_path / "mixed.pt2")
    assert mixed.training  # the export traced eval mode and restored the mode
    program = torch.export.load(str(path)).module()
    mixed.eval()
    for batch in (1, 4):
        x = torch.randn(batch, 3, 20, 20)
        with torch.no_grad():
            torch.testing.assert_close(program(x), mixed(x), rtol=1e-6, atol=1e-6)
    mixed.train()


@pytest.fixture(scope="module")
def ort() -> ModuleType:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


def run_onnx(ort: ModuleType, path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out)


def test_onnx_matches_onnxruntime(mixed: nn.Module, tmp_path: Path, ort: ModuleType) -> None:
    path = export(mixed, tmp_path / "mixed.onnx")
    mixed.eval()
    for batch in (1, 3):
        x = torch.randn(batch, 3, 20, 20)
        with torch.no_grad():
            torch.testing.assert_close(run_onnx(ort, path, x), mixed(x), rtol=1e-4, atol=1e-5)
    mixed.train()


@pytest.mark.slow
def test_onnx_resnet18_optimised(tmp_path: Path, ort: ModuleType) -> None:
    """The optimised network is channels-last; ONNX has no layout, and its graph is the
    network's own less the batch norms (exported as it is, it would compute strides as
    well), with the batch dynamic down to 1."""
    import onnx

    def operators(path: Path) -> collections.Counter[str]:
        return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)

    net = archdsl.load("resnet18").eval()
    fast = archdsl.optimize_for_inference(net)
    x = torch.randn(2, 3, RES, RES)
    path = export(fast, tmp_path / "r18.onnx", example=x)
    ops = operators(export(net, tmp_path / "plain.onnx", example=x))
    ops.pop("BatchNormalization", None)  # (torch 2.13's exporter folds them itself)
    assert operators(path) == ops
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # untouched
    for batch in (1, 3):
        x = torch.randn(batch, 3, RES, RES)
        with torch.no_grad():
            torch.testing.assert_close(run_onnx(ort, path, x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ext", [".pt", ".pth", ".safetensors"])
def test_state_dict_outputs_load_back(ext: str, mixed: nn.Module, tmp_path: Path) -> None:
    """Read by the reference readers (``torch.load``; the safetensors package), every key in
    order and every tensor exact; and loaded back by ``weights=``."""
    path = export(mixed, tmp_path / f"mixed{ext}")
    if ext == ".safetensors":
        state = pytest.importorskip("safetensors.torch").load_file(path)
    else:
        state = torch.load(path, weights_only=True)
    assert list(state) == list(mixed.state_dict())
    for k, v in mixed.state_dict().items():
        assert state[k].dtype == v.dtype and torch.equal(state[k], v), k
    again = archdsl.compile(MIXED, weights=path)
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, mixed.state_dict()[k], rtol=0, atol=0)


# ---- the command line -------------------------------------------------------------------


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.arch"
    path.write_text(MIXED)
    return path


@pytest.mark.parametrize("ext", [".py", ".pt2", ".pt", ".safetensors"])
def test_cli_compile_writes_each_format(
    ext: str, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"model{ext}"
    assert cli(["compile", str(spec_file), "-o", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 0
    assert f"saved       {out} ({FORMATS[ext]})" in capsys.readouterr().out


def test_cli_weights_and_optimize(
    spec_file: Path, tmp_path: Path, mixed: nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.pt"
    torch.save(mixed.state_dict(), weights)
    out = tmp_path / "fast.pt2"
    code = cli(
        [
            "compile",
            str(spec_file),
            "--weights",
            str(weights),
            "--optimize",
            "inference",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert re.search(r"^load +\d", printed, re.M) and re.search(r"^optimize +\d", printed, re.M)
    program = torch.export.load(str(out)).module()
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(program(x), mixed.eval()(x), rtol=1e-4, atol=1e-5)
    mixed.train()


def test_cli_weights_with_a_py_output_says_where_they_go(
    spec_file: Path, tmp_path: Path, mixed: nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    """The .py file is source only: the weights are checked against the network, and the
    report says how the emitted class takes them; what it says works."""
    weights = tmp_path / "w.pt"
    torch.save(mixed.state_dict(), weights)
    out = tmp_path / "net.py"
    assert cli(["compile", str(spec_file), "--weights", str(weights), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"load_state_dict(torch.load({str(weights)!r}))" in printed
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    emitted = namespace[namespace["__all__"][0]]()
    emitted.load_state_dict(torch.load(str(weights)))
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(emitted.eval()(x), mixed.eval()(x), rtol=0, atol=0)
    mixed.train()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-o", "m.pkl"], "unsupported extension; supported: .py (standalone PyTorch source)"),
        (["--optimize", "inference", "-o", "m.safetensors"], "applies to .pt2 and .onnx outputs"),
        (["--optimize", "inference", "-o", "m.py"], "applies to .pt2 and .onnx outputs"),
        (["--weights", "no/such/file.pth"], "--weights no/such/file.pth: no such file"),
        (["--optimize", "training"], "invalid choice"),
    ],
)
def test_cli_usage_errors(
    argv: list[str], message: str, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["compile", str(spec_file), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_py_output_imports_without_archdsl(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "standalone.py"
    assert cli(["compile", str(spec_file), "-o", str(out)]) == 0
    code = (
        "import sys; sys.modules['archdsl'] = None\n"  # importing archdsl would now fail
        "import importlib.util as u\n"
        f"s = u.spec_from_file_location('standalone', {str(out)!r})\n"
        "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
        "import torch; print(tuple(m.Mixed().eval()(torch.randn(2, 3, 20, 20)).shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 5)"
