"""Replays of inputs that found bugs, and the caret line under an error.

Every ``.arch`` file in ``tests/fuzz_regressions/`` is checked through the API (with the
bundled spec folder as its path, so that its imports resolve as they did) and through
``archdsl check FILE``, under the fuzzer's oracle (tests/fuzzoracle.py): a graph or an
``ArchError`` that renders, quickly; exit 0 or 1, never a traceback. The inputs that
``KNOWN_BUGS`` lists still fail; their replays are strict xfails. The caret line is the
line of the error, whatever separators the text holds, and shows no character that moves
the terminal's cursor. The fuzzing that finds such inputs is in test_fuzz.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import archdsl
from archdsl.elaborate.loader import bundled_spec_root
from fuzzoracle import LARGE_CASE_SECONDS, run_case, run_cli, slowness

REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"
SPEC_ROOT = bundled_spec_root()


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_cli")


# ---- the caret line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "separator", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]
)
def test_the_caret_line_is_the_line_of_the_error(separator: str) -> None:
    """Only \\n ends a line, for the lexer and for the caret line alike (str.splitlines()
    would also break at these)."""
    text = f"# a comment{separator}with a stray separator\nnetwork n {{ input [3, 8, 8]; zz }}\n"
    with pytest.raises(archdsl.ArchNameError) as info:
        archdsl.check(text)
    assert (info.value.line, info.value.column) == (2, 30)
    assert info.value.render().split("\n")[1:3] == [
        "  network n { input [3, 8, 8]; zz }",
        "                               ^^",
    ]


@pytest.mark.parametrize(
    "separator", ["\f", "\v", "\x1c", "\x85", "\u2028", "\r", "\x1b", "\u202e"]
)
def test_control_characters_in_the_caret_line_are_escaped(separator: str) -> None:
    """A shown line never carries a character that moves the terminal's cursor or reorders
    the text; the caret stays under the error."""
    text = f"network n {{ input [3, 8, 8];{separator} zz }}\n"
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.check(text)
    shown, caret = info.value.render().split("\n")[1:3]
    escaped = ascii(separator)[1:-1]
    assert shown.isprintable() and escaped in shown
    start = caret.index("^")  # the caret covers the name, or the escaped character
    word = "zz" if info.value.column > 29 else escaped
    assert shown[start : start + caret.count("^")] == word


# ---- regressions: inputs that found bugs ----------------------------------------------------


def _known_bugs() -> dict[str, str]:
    """``tests/fuzz_regressions/KNOWN_BUGS``: ``file.arch: reason`` for inputs that still
    fail; their replays are strict xfails, so a fix makes them fail until listed no more."""
    path = REGRESSIONS / "KNOWN_BUGS"
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(":")
            entries[name.strip()] = reason.strip()
    return entries


KNOWN_BUGS = _known_bugs()
REGRESSION_CASES = sorted(p.name for p in REGRESSIONS.glob("*.arch"))


def _regression(name: str) -> object:
    if name in KNOWN_BUGS:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]))
    return name


def test_known_bugs_name_existing_regressions() -> None:
    assert set(KNOWN_BUGS) <= set(REGRESSION_CASES)


@pytest.mark.parametrize("name", [_regression(n) for n in REGRESSION_CASES])
def test_regression(name: str, cli_dir: Path) -> None:
    """Replay a kept input through the API (with the spec folder as its path, so its
    imports resolve as they did) and through the CLI."""
    text = (REGRESSIONS / name).read_bytes().decode("utf-8", errors="surrogatepass")
    # a case at a size limit may take LARGE_CASE_SECONDS on the machine the budgets were
    # set on (run_case checks it, scaled by this machine's slowness); twice that is a hang
    hang = 2 * LARGE_CASE_SECONDS * slowness()
    run_case(text, str(SPEC_ROOT / name), hang=hang)
    run_cli(text, cli_dir, name, hang=hang)
