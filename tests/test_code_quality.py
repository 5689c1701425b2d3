"""The code's own checks, run with the tests so that CI holds every change to them
(STYLE.md): ruff's lint rules and layout over everything written in Python here, and mypy's
types over the package and its CLI (the files ``[tool.mypy]`` in pyproject.toml names).
Both tools come with the ``test`` extra, pinned, since a new release may add rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(tool: str, *args: str) -> None:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    done = subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


PYTHON = ("archdsl", "cli", "tests", "bench", "examples")


def test_ruff_finds_nothing() -> None:
    run("ruff", "check", *PYTHON)


def test_the_code_is_formatted_as_ruff_formats_it() -> None:
    run("ruff", "format", "--check", *PYTHON)


def test_mypy_finds_nothing() -> None:
    import torch

    if not torch.__version__.startswith("2.13."):  # torch's annotations change by release
        pytest.skip(f"types are checked against torch 2.13's annotations, not {torch.__version__}")
    run("mypy")
