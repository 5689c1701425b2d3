"""``ArchError.render()``: the line the lexer means, shown so that a terminal cannot be
misled by it, the caret under the error; several errors and their count."""

from __future__ import annotations

import pytest

import archdsl
from archdsl.errors import MAX_SHOWN, ArchError, ArchNameError, Span, printable, source_lines


def render_at(text: str, line: int, column: int, end: int | None = None) -> list[str]:
    span = Span("f.arch", line, column, line if end else None, end)
    return ArchError("boom", span, text).render().split("\n")


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a\nb", ["a", "b"]),
        ("a\nb\n", ["a", "b"]),
        ("a\r\nb\r\n", ["a", "b"]),
        ("a\n\n", ["a", ""]),
        ("", [""]),
        ("a\fb\vc\x1cd\x85e\u2028f\u2029g\rh\nz", ["a\fb\vc\x1cd\x85e\u2028f\u2029g\rh", "z"]),
    ],
)
def test_source_lines_break_at_newlines_only(text: str, lines: list[str]) -> None:
    assert source_lines(text) == lines


def test_the_caret_is_under_the_span() -> None:
    assert render_at("network n { zz }", 1, 13, 15) == [
        "f.arch:1:13: error: boom",
        "  network n { zz }",
        "              ^^",
    ]


def test_control_characters_are_escaped_and_the_caret_follows() -> None:
    shown, caret = render_at("\f\x1b[2J\u202e zz", 1, 8, 10)[1:]
    assert shown == "  \\x0c\\x1b[2J\\u202e zz"
    assert caret == "  " + " " * len("\\x0c\\x1b[2J\\u202e ") + "^^"


def test_tabs_show_as_one_space() -> None:
    assert render_at("\tzz", 1, 2, 4)[1:] == ["   zz", "   ^^"]


def test_a_caret_under_an_escaped_character_covers_its_escape() -> None:
    assert render_at("a\x85b", 1, 2, 3)[1:] == ["  a\\x85b", "   ^^^^"]


def test_wide_characters_take_two_columns() -> None:
    """East Asian wide characters take two terminal cells: the caret still lines up."""
    assert render_at('conv("日本", zz)', 1, 12, 14)[1:] == [
        '  conv("日本", zz)',
        "               ^^",
    ]
    assert render_at('"日本"', 1, 1, 5)[2] == "  ^^^^^^"


def test_a_long_line_is_a_window_around_the_column() -> None:
    text = "x" * 1000 + "\x0c" + "zz" + "x" * 1000
    shown, caret = render_at(text, 1, 1002, 1004)[1:]
    assert len(shown) <= 2 + MAX_SHOWN + 3
    assert shown[caret.index("^") :].startswith("zz") and caret.count("^") == 2


def test_messages_and_notes_are_printable() -> None:
    err = ArchError('cannot use "a\rb\x1b[31m"', Span("f.arch", 0, 0))
    err.notes.append("from \u2028here")
    assert err.render() == 'f.arch: error: cannot use "a\\rb\\x1b[31m"\n  note: from \\u2028here'
    assert printable("one\ntwo\tthree") == "one\ntwo\tthree"


def test_several_errors_render_each_then_the_count() -> None:
    text = "network n {\n  zz -> yy\n}\n"
    first = ArchNameError("unknown op or block 'zz'", Span("f.arch", 2, 3, 2, 5), text)
    second = ArchNameError("unknown op or block 'yy'", Span("f.arch", 2, 9, 2, 11), text)
    second.notes.append("a note")
    first.others = [second]
    assert first.render() == "\n".join(
        [
            "f.arch:2:3: error: unknown op or block 'zz'",
            "    zz -> yy",
            "    ^^",
            "f.arch:2:9: error: unknown op or block 'yy'",
            "    zz -> yy",
            "          ^^",
            "  note: a note",
            "2 errors",
        ]
    )
    first.omitted = 3
    assert first.render().endswith("\n5 errors (the first 2 shown)")
    assert str(first) == "f.arch:2:3: error: unknown op or block 'zz'"  # str: the first alone


def test_end_of_file_is_at_the_lexers_last_line() -> None:
    """A stray separator before the end does not move the end-of-file position."""
    with pytest.raises(archdsl.ArchSyntaxError) as info:
        archdsl.check("network n {\n  input [3, 8, 8]  # a\x85b\u2028c\f\n  relu\n")
    assert (info.value.line, info.value.column) == (3, 7)
    assert info.value.render().split("\n")[1] == "    relu"
