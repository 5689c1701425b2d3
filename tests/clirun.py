"""What the command line tests share (test_cli.py, test_cli_input.py): running ``archdsl``
in-process, a spec with an error, and the patterns of an error's location and caret lines."""

from __future__ import annotations

import re

import pytest

from archdsl_cli.main import main

LOCATION = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+): error: ", re.M)
CARET = re.compile(r"^ +\^+$", re.M)

BAD_SPEC = """\
network tiny {
  input [3, 8, 8]
  conv(4, 3) -> flatten -> linear(10, true, 5)
}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
