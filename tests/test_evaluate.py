"""The evaluator's semantics where Python's differ: equality, redefinition, quoted values.

Limits (numbers, lists, the step budget) are tested in test_limits_numbers.py.
"""

from __future__ import annotations

import pytest

import archdsl
from archdsl.elaborate.evaluate import Budget, Env, evaluate, show
from archdsl.frontend import parse

NET = "network n { input [3, 8, 8]; relu }"


def value(expr: str) -> object:
    return evaluate(parse(f"v = {expr}").defs[0].value, Env({}))


@pytest.mark.parametrize(
    ("expr", "result"),
    [
        ("1 == 1.0", True),
        ("1 == true", False),
        ("0 == false", False),
        ("[1, 2] == [1.0, 2]", True),
        ("[true] == [1]", False),  # Python's True == 1 does not leak in through lists
        ("[[1], [true]] == [[1], [1]]", False),
        ("[[1], [true]] != [[1], [1]]", True),
        ('["a", none] == ["a", none]', True),
        ("[1, 2] == [1, 2, 3]", False),
        ("[] == []", True),
        ('[1] == "1"', False),
    ],
)
def test_equality_is_by_value_and_kind(expr: str, result: bool) -> None:
    assert value(expr) is result


def test_equality_of_long_lists_spends_a_step_per_item() -> None:
    expr = parse("v = a == b").defs[0].value
    budget = Budget(10**6)
    env = Env({"a": tuple(range(1000)), "b": tuple(range(1000))}, budget=budget)
    assert evaluate(expr, env) is True
    assert 10**6 - budget.left == 3 + 1000  # three expressions and the items compared


@pytest.mark.parametrize(
    "defs", ["v = 1000\nv = 1000", "v = [1, [2.5]]\nv = [1, [2.5]]", 'v = "a"\nv = "a"']
)
def test_repeating_a_definition_with_an_equal_value_is_allowed(defs: str) -> None:
    archdsl.check(defs + "\n" + NET)


@pytest.mark.parametrize(
    ("defs", "values"),
    [
        ("v = 1\nv = 1.0", "1, here 1.0"),
        ("v = 1\nv = true", "1, here true"),
        ("v = 0\nv = false", "0, here false"),
        ("v = [1]\nv = [1.0]", "[1], here [1.0]"),
        ("v = 1000\nv = 1001", "1000, here 1001"),
        ("v = 2 ** 40\nv = 2 ** 40 + 1", "1099511627776, here 1099511627777"),
        ("v = none\nv = false", "none, here false"),
    ],
)
def test_redefining_a_name_with_another_value_is_an_error(defs: str, values: str) -> None:
    with pytest.raises(archdsl.ArchNameError) as info:
        archdsl.check(defs + "\n" + NET)
    err = info.value
    assert err.message == f"'v' is already defined at <string>:1:1 as {values}"
    assert (err.path, err.line, err.column) == ("<string>", 2, 1)


@pytest.mark.parametrize(
    ("v", "shown"),
    [
        (None, "none"),
        (True, "true"),
        (3, "3"),
        (10**18, "1000000000000000000"),
        (10**18 + 1, "1.000e+18"),
        (-(10**400), "-1.000e+400"),
        (1e300, "1e+300"),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("x" * 61, '"' + "x" * 30 + '..." (61 characters)'),
        ("x" * 60, '"' + "x" * 60 + '"'),
        ((1, (2, 3)), "[1, [2, 3]]"),
        (tuple(range(30)),
         "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, ... 13 more]"),
    ],
)  # fmt: skip
def test_show_writes_values_as_the_language_does_and_abbreviates(v: object, shown: str) -> None:
    assert show(v) == shown


def test_show_of_an_integer_too_long_for_str() -> None:
    assert show(10**5000) == "1.000e+5000"  # str() refuses more than 4,300 digits


def test_show_of_a_deeply_nested_list_is_short() -> None:
    v: object = (1,)
    for _ in range(10_000):  # deeper than Python's stack: show must not recurse that far
        v = (v,)
    assert show(v) == "[" * 28 + "[...]" + "]" * 28
