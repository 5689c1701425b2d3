"""The op registry: every built-in op by name and by alias."""

from __future__ import annotations

from archdsl.ops import activation, conv, deform, merge, norm, pool, regularize, shape_ops
from archdsl.ops.base import OpDef

ALL_OPS: tuple[OpDef, ...] = (
    conv.DEFS
    + deform.DEFS
    + norm.DEFS
    + activation.DEFS
    + pool.DEFS
    + shape_ops.DEFS
    + regularize.DEFS
    + merge.DEFS
)


def _index(defs: tuple[OpDef, ...]) -> dict[str, OpDef]:
    table: dict[str, OpDef] = {}
    for opdef in defs:
        for name in (opdef.name, *opdef.aliases):
            if name in table:
                raise RuntimeError(f"op name {name!r} registered twice")
            table[name] = opdef
    return table


OPS: dict[str, OpDef] = _index(ALL_OPS)
"""Every op by name; aliases are extra keys pointing at the same OpDef."""

MERGE_OPS: frozenset[str] = frozenset(d.name for d in ALL_OPS if d.arity == -1)
"""Canonical names of the variadic merges, which the backend applies as functions."""


def get_op(name: str) -> OpDef | None:
    """The op called ``name`` (or aliased so), or None when there is none.

    Ops registered from Python join ``OPS``; the first miss loads the ``archdsl.ops``
    entry points of installed plugins (once) and looks again.
    """
    opdef = OPS.get(name)
    if opdef is None:
        from archdsl.ops import custom

        if not custom._entry_points_loaded:
            custom.load_entry_points()
            opdef = OPS.get(name)
    return opdef
