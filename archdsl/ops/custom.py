"""Ops registered from Python: ``archdsl.register_op`` and the ``archdsl.ops`` entry points.

A registered op is an :class:`~archdsl.ops.base.OpDef` like a built-in one, entered into
the same table (:data:`archdsl.ops.OPS`), so the elaborator, shape checking, ``summary``
and rendering treat it as any other op. Its module factory is kept here, apart from the
OpDef, and called only by the torch backend: registering and checking need no torch.

Third-party packages register ops without any change here by declaring an entry point in
the group ``archdsl.ops``; each entry point names a callable taking no arguments that calls
:func:`register_op`. They are loaded once, the first time a spec names an op that is not
in the table (or on an explicit :func:`load_entry_points`), so importing archdsl stays
cheap and a plugin's imports run only when a spec may need them.

>>> from archdsl.ops import Param
>>> _ = register_op("double_channels", params=[], infer=lambda a, s: (2 * s[0][0], *s[0][1:]),
...                 build=lambda a, s: None)
>>> import archdsl
>>> archdsl.check("network n { input [3, 8, 8]; double_channels }").output_shape
(6, 8, 8)
>>> unregister_op("double_channels")
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

from archdsl.ops.attrs import KINDS
from archdsl.ops.base import REQUIRED, OpDef, Param, Shape, ShapeProblem
from archdsl.ops.registry import OPS

ENTRY_POINT_GROUP = "archdsl.ops"
"""The entry-point group third-party packages register ops under."""

KEYWORDS: frozenset[str] = frozenset(
    {
        "add",
        "and",
        "block",
        "concat",
        "else",
        "false",
        "for",
        "if",
        "import",
        "in",
        "init",
        "input",
        "mul",
        "network",
        "none",
        "not",
        "or",
        "scaled",
        "seq",
        "side",
        "true",
        "x",
    }
)
"""Words of the language's grammar, which an op name cannot be."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Infer = Callable[[Mapping[str, Any], list[Shape]], Shape]
Build = Callable[[Mapping[str, Any], list[Shape]], Any]

BUILDERS: dict[str, Build] = {}
"""Module factory of every registered op, by canonical name (read by the torch backend)."""

_entry_points_loaded = False


class OpRegistrationError(ValueError):
    """A registration that cannot be accepted: a taken name, a bad parameter list."""


def register_op(
    name: str,
    *,
    params: Sequence[Param | str] | Mapping[str, Any],
    infer: Infer,
    build: Build,
    count_params: Callable[[Mapping[str, Any], list[Shape]], int] | None = None,
    macs: Callable[[Mapping[str, Any], list[Shape], Shape], int] | None = None,
    doc: str = "",
    aliases: Sequence[str] = (),
) -> OpDef:
    """Make ``name`` an op that specs can use like a built-in one; return its OpDef.

    - ``params``: :class:`~archdsl.ops.Param` objects (validated and normalized like a
      built-in's), bare names (required, any value), or a mapping name -> default
      (``archdsl.ops.REQUIRED`` for none). Positional arguments bind in this order.
    - ``infer(attrs, input_shapes) -> output shape``, shapes without the batch dimension;
      raise :class:`~archdsl.ops.ShapeProblem` to reject inputs (the error then points at
      the op in the spec). Any other exception is reported the same way.
    - ``build(attrs, input_shapes) -> torch.nn.Module``, called only when a network is built.
    - ``count_params(attrs, input_shapes) -> int``: when omitted, parameters and buffers
      are counted by building the module on torch's ``meta`` device (allocating nothing;
      ``check`` stays torch-free, ``summary`` then imports torch).
    - ``macs(attrs, input_shapes, output_shape) -> int``: multiply-accumulates per sample;
      0 when omitted.

    Raises :class:`OpRegistrationError` when ``name`` or an alias is a keyword of the
    language, not an identifier, or already an op (built-in or registered).
    """
    names = (name, *aliases)
    for n in names:
        _check_free(n)
    if len(set(names)) != len(names):
        raise OpRegistrationError(f"op '{name}': an alias repeats a name: {list(names)}")
    param_defs = _params(name, params)
    counts = (lambda a, s: _meta_counts(name, a, s)[0]) if count_params is None else count_params
    opdef = OpDef(
        name=name,
        params=param_defs,
        infer=_checked_infer(name, infer),
        count_params=counts,
        count_buffers=lambda a, s: 0 if count_params is not None else _meta_counts(name, a, s)[1],
        macs=macs if macs is not None else (lambda a, s, o: 0),
        arity=1,
        stateless=False,
        doc=doc,
        aliases=tuple(aliases),
        torch_class=getattr(build, "__qualname__", ""),
    )
    BUILDERS[name] = build
    for n in names:
        OPS[n] = opdef
    return opdef


def unregister_op(name: str) -> None:
    """Remove a registered op (and its aliases); built-in ops cannot be removed."""
    if name not in BUILDERS:
        what = "a built-in op" if name in OPS else "not a registered op"
        raise OpRegistrationError(f"cannot unregister '{name}': {what}")
    opdef = OPS[name]
    for n in (opdef.name, *opdef.aliases):
        del OPS[n]
    del BUILDERS[name]


def registered_ops() -> list[str]:
    """Canonical names of the ops registered from Python, sorted."""
    return sorted(BUILDERS)


def load_entry_points(*, force: bool = False) -> None:
    """Run every ``archdsl.ops`` entry point once (again only with ``force``).

    A plugin that fails to import or to register (e.g. a name taken by another plugin) is
    reported as a RuntimeWarning naming the entry point, and the others still load: one
    broken package must not make every spec fail.
    """
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return
    _entry_points_loaded = True
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            ep.load()()
        except Exception as e:  # noqa: BLE001 - a plugin's failure is reported, not fatal
            warnings.warn(
                f"archdsl: op plugin '{ep.name}' ({ep.value}) failed to load: "
                f"{type(e).__name__}: {e}",
                RuntimeWarning,
            )


def _check_free(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise OpRegistrationError(f"op name {name!r} is not an identifier")
    if name in KEYWORDS:
        raise OpRegistrationError(f"op name '{name}' is a keyword of the archdsl language")
    existing = OPS.get(name)
    if existing is not None:
        what = "a registered op" if existing.name in BUILDERS else "a built-in op"
        also = f" (an alias of '{existing.name}')" if existing.name != name else ""
        raise OpRegistrationError(
            f"op name '{name}' is taken: it is {what}{also}; unregister it first or pick "
            "another name"
        )


def _params(op: str, params: Sequence[Param | str] | Mapping[str, Any]) -> tuple[Param, ...]:
    items: Iterable[Param | str]
    if isinstance(params, Mapping):
        items = [Param(n, "any", d) for n, d in params.items()]
    elif isinstance(params, str):
        raise OpRegistrationError(f"op '{op}': params must be a list, not a string")
    else:
        items = params
    result: list[Param] = []
    for p in items:
        param = Param(p) if isinstance(p, str) else p
        if not isinstance(param, Param) or not _NAME.match(param.name):
            raise OpRegistrationError(f"op '{op}': bad parameter {p!r}")
        if param.kind not in KINDS:
            raise OpRegistrationError(
                f"op '{op}': parameter '{param.name}' has unknown kind '{param.kind}' "
                f"(kinds: {', '.join(sorted(KINDS))})"
            )
        if any(q.name == param.name for q in result):
            raise OpRegistrationError(f"op '{op}': parameter '{param.name}' given twice")
        result.append(param)
    defaults = [p.default is not REQUIRED for p in result]
    if True in defaults and not all(defaults[defaults.index(True) :]):
        raise OpRegistrationError(f"op '{op}': a required parameter follows one with a default")
    return tuple(result)


def _checked_infer(name: str, infer: Infer) -> Infer:
    """``infer`` with any failure or malformed result turned into a ShapeProblem."""

    def checked(attrs: Mapping[str, Any], shapes: list[Shape]) -> Shape:
        try:
            out = infer(attrs, shapes)
        except ShapeProblem:
            raise
        except Exception as e:  # noqa: BLE001 - reported at the op's span in the spec
            raise ShapeProblem(f"shape rule of '{name}' failed: {type(e).__name__}: {e}") from e
        try:
            shape = tuple(out)
        except TypeError:
            shape = ()
        if not 1 <= len(shape) <= 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise ShapeProblem(
                f"shape rule of '{name}' returned {out!r}, not a shape of 1 to 3 positive ints"
            )
        return shape

    return checked


def _meta_counts(name: str, attrs: Mapping[str, Any], shapes: list[Shape]) -> tuple[int, int]:
    """(parameters, buffer elements) of the op's module, built without allocating."""
    import torch

    with torch.device("meta"):
        module = BUILDERS[name](attrs, [tuple(s) for s in shapes])
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for b in module.buffers())
    return params, buffers
