"""Arguments bound to parameters: a call's (of a block, an op, ``scaled``, an ``init``
function; an op's then completed with its defaults and normalised, its expressions kept),
and a network's, through its aliases (``network b = a(args)``) and the caller's overrides;
and the plain values a block's frame ends with (``Scope.values``).

>>> from archdsl.frontend.parser import parse
>>> from archdsl.elaborate.evaluate import Env
>>> network = parse("network t { input [3]; conv(8, 3, stride=2) }").defs[0]
>>> call = network.body.stmts[1].items[0].primary
>>> bind_args(call.args, ["out", "kernel", "stride"], "conv", Env({}), call.span)
{'out': 8, 'kernel': 3, 'stride': 2}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archdsl.elaborate.evaluate import Budget, Env, evaluate, from_python
from archdsl.elaborate.loader import NetworkRef, SpecModule
from archdsl.elaborate.network_rules import alias_chain
from archdsl.elaborate.values import did_you_mean, show
from archdsl.errors import ArchNameError, ArchTypeError, Span
from archdsl.frontend import ast
from archdsl.ops import normalize_attrs
from archdsl.ops.base import REQUIRED, OpDef, ValueProblem


def bind_args(
    args: tuple[ast.Arg, ...], names: Sequence[str], what: str, env: Env, span: Span
) -> dict[str, Any]:
    """The values of ``args`` (evaluated in ``env``) by parameter name, positional ones
    taking ``names`` in order; ``what`` names the callee in errors (``block 'unit'``)."""
    bound: dict[str, Any] = {}
    positional = True
    for i, a in enumerate(args):
        if a.name is None:
            if not positional:
                raise ArchTypeError("positional argument after a keyword argument", a.span)
            if i >= len(names):
                raise ArchTypeError(
                    f"{what} takes at most {len(names)} positional argument{'s' * (len(names) != 1)}, got {len(args)}",
                    a.span,
                )
            name = names[i]
        else:
            positional = False
            name = a.name
            if name not in names:
                raise ArchNameError(
                    f"{what} has no parameter '{name}'{did_you_mean(name, names)}", a.span
                )
        if name in bound:
            raise ArchTypeError(f"{what}: parameter '{name}' given twice", a.span)
        bound[name] = evaluate(a.value, env)
    return bound


def bind_network(
    ref: NetworkRef, overrides: Mapping[str, Any], budget: Budget
) -> tuple[
    ast.NetworkDef, SpecModule, dict[str, Any], list[ast.ScaleClause], list[ast.NetworkAlias]
]:
    """Follow ``network b = a(args)`` to the defining network; bind its parameters:
    defaults, then each alias's arguments (outermost last), then ``overrides``. Also
    returns the aliases followed, the one naming the defining network first."""
    chain, ref = alias_chain(ref)
    defn = ref.defn
    assert isinstance(defn, ast.NetworkDef)
    params = {p.name: p for p in defn.params}
    given: dict[str, Any] = {}
    scales: list[ast.ScaleClause] = []
    for alias_ref in reversed(chain):
        alias = alias_ref.defn
        assert isinstance(alias, ast.NetworkAlias)
        given.update(
            bind_args(
                alias.args,
                list(params),
                f"network '{defn.name}'",
                alias_ref.module.env,
                alias.span,
            )
        )
        scales.extend(alias.scales)
    for name, value in overrides.items():
        if name not in params:
            known = ", ".join(params) or "none"
            raise ArchNameError(
                f"network '{defn.name}' has no parameter '{name}' (set by the caller)"
                f"{did_you_mean(name, params)}; its parameters: {known}",
                chain[0].defn.span if chain else defn.span,
                (chain[0].module if chain else ref.module).source,
            )
        what = f"parameter '{name}' (set by the caller)"
        given[name] = from_python(value, what, params[name].span)
    values: dict[str, Any] = {}
    env = ref.module.env.child(budget=budget)
    for p in defn.params:
        if p.name in given:
            values[p.name] = given[p.name]
        elif p.default is not None:
            values[p.name] = evaluate(p.default, env)
        else:
            raise ArchTypeError(
                f"network '{defn.name}' needs a value for parameter '{p.name}'",
                p.span,
                ref.module.source,
            )
        env.set(p.name, values[p.name])
    aliases = [r.defn for r in reversed(chain) if isinstance(r.defn, ast.NetworkAlias)]
    return defn, ref.module, values, scales, aliases


@dataclass(frozen=True)
class BlockFrame:
    """What every call of one block shares in its scope's record: the parameters' literal
    defaults, and the locals that only rename another name (``c7 = channels_7x7``)."""

    defaults: Mapping[str, Any]
    aliases: frozenset[str]


def block_frame(defn: ast.BlockDef) -> BlockFrame:
    defaults = {p.name: p.default.value for p in defn.params if isinstance(p.default, ast.Literal)}
    stmts = defn.body.stmts
    aliases = {s.name for s in stmts if isinstance(s, ast.Assign) and isinstance(s.value, ast.Name)}
    return BlockFrame(defaults, frozenset(aliases))


def frame_values(
    frame: BlockFrame, locals_: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The numbers, booleans, strings and lists of numbers of a block's frame: its locals
    first, the names nearest to where values are used, then its parameters, then the
    locals that only rename another name."""
    aliases = frame.aliases
    values = {}
    for k, v in locals_.items():
        if (type(v) in _PLAIN or _numbers(v)) and k not in aliases:
            values[k] = v
    for k, v in params.items():
        if (type(v) in _PLAIN or _numbers(v)) and k not in locals_:
            values[k] = v
    for k in aliases:
        v = locals_.get(k)
        if type(v) in _PLAIN or _numbers(v):
            values[k] = v
    return values


def _numbers(value: Any) -> bool:
    return type(value) is tuple and all(type(v) in _NUMBERS for v in value)


_NUMBERS = frozenset({int, float})
_PLAIN = frozenset({int, float, bool, str})


def op_attrs(call: ast.OpCall, opdef: OpDef, env: Env) -> dict[str, Any]:
    """An op call's attributes: its arguments bound to the op's parameters, the defaults
    of those not given, normalised (``kernel=3`` as the op stores it); a missing required
    argument or a value the op refuses is an ArchTypeError at the argument."""
    names = opdef.param_names
    attrs = bind_args(call.args, names, opdef.name, env, call.span) if call.args else {}
    for name, default in opdef.defaults:
        if name not in attrs:
            if default is REQUIRED:
                sig = ", ".join(
                    q.name if q.default is REQUIRED else f"{q.name}={show(q.default)}"
                    for q in opdef.params
                )
                raise ArchTypeError(
                    f"{opdef.name} needs a value for '{name}': {opdef.name}({sig})", call.span
                )
            attrs[name] = default
    try:
        attrs = normalize_attrs(opdef, attrs)
    except ValueProblem as e:
        span = next(
            (
                a.span
                for i, a in enumerate(call.args)
                if (a.name or (names[i] if i < len(names) else None)) == e.param
            ),
            call.span,
        )
        raise ArchTypeError(e.message, span) from None
    return attrs


def arg_exprs(call: ast.OpCall, names: Sequence[str]) -> dict[str, ast.Expr]:
    """The expressions of a call's arguments that are not literals, by parameter name
    (``OpNode.exprs``: the ``.py`` output writes them as the spec computes them)."""
    return {
        a.name or names[i]: a.value
        for i, a in enumerate(call.args)
        if not isinstance(a.value, ast.Literal)
    }
