"""The training examples run, and lenet5 learns the digits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

SMALL = """
network small(num_classes = 4) {
  input [3, 16, 16]
  c1: conv(8, 3, padding=1) -> bn -> relu -> maxpool(2)
  -> global_avgpool(flatten=true) -> fc: linear(num_classes)
}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_ddp_train_two_processes(tmp_path: Path) -> None:
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(EXAMPLES / "ddp_train.py"),
        str(spec),
        "--steps",
        "3",
        "--batch-size",
        "4",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 process(es)" in result.stdout
    assert "step    3/3" in result.stdout
    assert "weights in sync across 2 process(es)" in result.stdout


@pytest.fixture(scope="module")
def train_digits():
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_digits
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_digits


def test_train_digits_short(train_digits) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        acc = train_digits.train(epochs=4, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert acc >= 0.8


def test_train_digits_progress_fallback(train_digits, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # no tqdm: the plain bar
    assert list(train_digits.progress(range(3), 3, "demo")) == [0, 1, 2]
    assert "3/3" in capsys.readouterr().err


@pytest.mark.slow
def test_train_digits_reaches_97_percent() -> None:
    pytest.importorskip("sklearn")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_digits.py"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr  # exit 1 below 97%
    assert "test accuracy" in result.stdout
