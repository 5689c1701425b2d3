"""The command line's inputs besides a spec file: standard input and ``--set`` values.

``-`` reads the spec from standard input: named ``<stdin>`` in errors, its imports read
from the current folder, UTF-8 only, read no further than a spec may be long, and filtered
by ``fmt -``. ``--set name=value`` takes the language's literals and lists, reaches a
parameter named like an API keyword (``path``), and a bad value is a usage error (exit 2)
pointing at the value. The tests run :func:`archdsl_cli.main.main` in-process. The
commands and their reports, errors and exit codes are tested in test_cli.py.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from timelimit import TimeLimit

from archdsl_cli.main import parse_set
from clirun import BAD_SPEC, CARET, LOCATION, run

# ---- standard input ---------------------------------------------------------------


def feed(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_check_reads_the_spec_from_stdin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-`` is standard input, named ``<stdin>``; its imports are read from the current
    folder, as for spec text given to the API."""
    (tmp_path / "blocks.arch").write_text("block unit(c) { conv(c, 3, padding=1) -> relu }\n")
    monkeypatch.chdir(tmp_path)
    feed(monkeypatch, b'import "blocks.arch"\nnetwork n {\n  input [3, 8, 8]\n  unit(4) x 2\n}\n')
    code, out, err = run(capsys, "check", "-")
    assert (code, err) == (0, "")
    assert re.search(r"^network +n +\(<stdin>\)$", out, re.M)
    assert "[N, 3, 8, 8] -> [N, 4, 8, 8]" in out


def test_an_error_on_stdin_has_its_location_and_source_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed(monkeypatch, BAD_SPEC.encode())
    code, _, err = run(capsys, "summary", "-")
    assert code == 1
    assert LOCATION.match(err).group("path", "line") == ("<stdin>", "3")
    assert "  conv(4, 3) -> flatten -> linear(10, true, 5)" in err and CARET.search(err)


def test_stdin_that_is_not_utf8_is_a_spec_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed(monkeypatch, b"network n { input [3, 8, 8] } # \xff\xfe")
    code, _, err = run(capsys, "check", "-")
    assert code == 1
    assert err.startswith("<stdin>: error: standard input is not UTF-8 text")


class Endless(io.RawIOBase):
    """A stream that never ends, like /dev/zero."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        buffer[:] = b"a" * len(buffer)
        return len(buffer)


def test_endless_stdin_is_read_no_further_than_a_spec_may_be(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless()), encoding="utf-8")
    )
    with TimeLimit(10):  # reading to the end would never return
        code, _, err = run(capsys, "check", "-")
    assert code == 1
    assert err.startswith(
        "<stdin>:1:1: error: spec file is 1000001 characters; the limit is 1000000"
    )


def test_fmt_filters_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fmt -`` writes the formatted text (an editor's format-on-save); ``--check -`` only
    says whether it would change."""
    text = "network n(k=3) {\n  input [3, 8, 8]\n  conv(4,k)\n}\n"
    feed(monkeypatch, text.encode())
    code, out, err = run(capsys, "fmt", "-")
    assert (code, err) == (0, "")
    assert out == "network n(k = 3) {\n  input [3, 8, 8]\n  conv(4, k)\n}\n"
    feed(monkeypatch, out.encode())
    assert run(capsys, "fmt", "-")[1] == out  # formatted text passes through unchanged
    feed(monkeypatch, text.encode())
    assert run(capsys, "fmt", "--check", "-") == (1, "would reformat -\n", "")


# ---- --set values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("n=10", ("n", 10)),
        ("n=-3", ("n", -3)),
        ("p=0.5", ("p", 0.5)),
        ("eps=1e-5", ("eps", 1e-5)),
        ("flag=true", ("flag", True)),
        ("flag=false", ("flag", False)),
        ("stride=none", ("stride", None)),
        ('mode="fan_out"', ("mode", "fan_out")),
        ("mode='fan_out'", ("mode", "fan_out")),
        ("mode=fan_out", ("mode", "fan_out")),
        ("layers=[3, 4, 6, 3]", ("layers", (3, 4, 6, 3))),
        ("layers=[]", ("layers", ())),
        ("acts=[relu, gelu]", ("acts", ("relu", "gelu"))),
        ("nested=[[1, 2], [3]]", ("nested", ((1, 2), (3,)))),
        (" n = 7 ", ("n", 7)),
    ],
)
def test_parse_set_values(item: str, expected: tuple[str, object]) -> None:
    assert parse_set(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("num_classes", "needs name=value"),
        ("=3", "is not a parameter name"),
        ("a-b=3", "is not a parameter name"),
        ("num_classes=", "needs a value"),
        ("num_classes=1 2", "unexpected '2'"),
        ("num_classes=[1, 2", "unexpected end of file"),
        ('name="abc', "unterminated string"),
        ("n=1; m=2", "expected one value"),
        ("n=foo(1)", "unknown function 'foo'"),
        ("n=1 // 0", "division by zero"),
        ("n=2 ** 10000", "too large"),
    ],
)
def test_bad_set_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], item: str, message: str
) -> None:
    code, out, err = run(capsys, "check", "resnet18", "--set", item)
    assert code == 2, err
    assert out == ""
    assert "archdsl check: error: " in err and message in err
    assert "Traceback" not in err


def test_bad_set_points_at_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "resnet18", "--set", "num_classes=[1 2]")
    assert code == 2
    shown, caret = err.splitlines()[-2:]
    assert shown == "  num_classes=[1 2]"
    assert caret.index("^") == shown.index("2")


def test_set_reaches_parameters_named_like_api_keywords(tmp_path, capsys):
    spec = tmp_path / "p.arch"
    spec.write_text("network n(path = 1) { input [path, 4, 4] -> relu }\n")
    code, out, _ = run(capsys, "check", str(spec), "--set", "path=3")
    assert code == 0
    assert "[N, 3, 4, 4]" in out
