"""What a network says about itself besides its layers: the networks it derives from
(``network b = a(...)``), ``init`` rules, the ``scaled(...)`` clauses of compound scaling
and the fields of its outputs, resolved by the elaborator.

Both bind their arguments with the elaborator's argument binder (passed in as ``bind``),
so they take positional and keyword arguments, and report errors, as every call does.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from archdsl.elaborate.loader import NetworkRef
from archdsl.elaborate.values import Scaling, did_you_mean, show
from archdsl.errors import ArchLimitError, ArchNameError, ArchTypeError, Span
from archdsl.frontend import ast
from archdsl.ir import Graph, OpNode
from archdsl.ops import get_op


def alias_chain(ref: NetworkRef) -> tuple[list[NetworkRef], NetworkRef]:
    """Follow ``network b = a(args)`` from ``ref`` to the network that defines a body:
    the aliases passed (``ref``'s first) and that network. An alias of itself, of an
    unknown name or of something not a network is an error at the alias."""
    chain: list[NetworkRef] = []
    seen: set[int] = set()
    while isinstance(ref.defn, ast.NetworkAlias):
        if id(ref.defn) in seen:
            raise ArchNameError(
                f"network '{ref.defn.name}' is defined in terms of itself", ref.defn.span
            )
        seen.add(id(ref.defn))
        chain.append(ref)
        alias = ref.defn
        target = ref.module.names.get(alias.base)
        if not isinstance(target, NetworkRef):
            nets = [n for n, v in ref.module.names.items() if isinstance(v, NetworkRef)]
            what = "unknown network" if target is None else "not a network:"
            raise ArchNameError(
                f"{what} '{alias.base}'{did_you_mean(alias.base, nets)}",
                alias.base_span,
                ref.module.source,
            )
        ref = target
    return chain, ref


def unset_parameters(ref: NetworkRef) -> list[str]:
    """The parameters of a network (through its aliases) that have neither a default nor
    a value from an alias: a network meant to be called with values, which cannot be
    checked on its own. ``[]`` where the aliases do not lead to a network definition (an
    error that elaborating it reports)."""
    try:
        chain, defining = alias_chain(ref)
    except ArchNameError:
        return []
    defn = defining.defn
    assert isinstance(defn, ast.NetworkDef)  # alias_chain follows every alias
    names = [p.name for p in defn.params]
    given: set[str] = set()
    for alias_ref in chain:
        alias = alias_ref.defn
        assert isinstance(alias, ast.NetworkAlias)
        positional = [a for a in alias.args if a.name is None]
        given |= set(names[: len(positional)]) | {a.name for a in alias.args if a.name is not None}
    return [p.name for p in defn.params if p.default is None and p.name not in given]


INIT_FUNCTIONS: dict[str, tuple[str, ...]] = {
    # name -> accepted keyword parameters, positional in this order
    "kaiming_normal": ("a", "mode", "nonlinearity"),
    "kaiming_uniform": ("a", "mode", "nonlinearity"),
    "xavier_normal": ("gain",),
    "xavier_uniform": ("gain",),
    "normal": ("mean", "std"),
    "trunc_normal": ("mean", "std", "a", "b"),
    "uniform": ("a", "b"),
    "constant": ("val",),
    "zeros": (),
    "ones": (),
    "default": (),
}


@dataclass(frozen=True)
class InitRule:
    """``init conv.weight = kaiming_normal(mode="fan_out")``, resolved: applies to every
    module of ``op``, or (``op`` None) to every module whose path is ``path`` or ends in
    ``.path``."""

    op: str | None
    path: str | None
    tensor: str
    fn: str
    kwargs: tuple[tuple[str, Any], ...]
    span: Span


def init_rule(stmt: ast.InitStmt, bind: Callable[[list[str]], dict[str, Any]]) -> InitRule:
    """Resolve an ``init`` statement; ``bind(names)`` binds its arguments to ``names``."""
    opdef = get_op(stmt.target[0]) if len(stmt.target) == 1 else None
    if stmt.tensor not in ("weight", "bias"):
        raise ArchNameError(
            f"init: tensor must be 'weight' or 'bias', got '{stmt.tensor}'", stmt.span
        )
    names = INIT_FUNCTIONS.get(stmt.fn)
    if names is None:
        raise ArchNameError(
            f"unknown init function '{stmt.fn}'{did_you_mean(stmt.fn, INIT_FUNCTIONS)}", stmt.span
        )
    kwargs = bind(list(names))
    op, path = (opdef.name, None) if opdef else (None, ".".join(stmt.target))
    return InitRule(op, path, stmt.tensor, stmt.fn, tuple(kwargs.items()), stmt.span)


def rule_matches(rule: InitRule, node: OpNode) -> bool:
    """Whether an ``init`` rule applies to the module of ``node``."""
    if node.path is None:
        return False
    if rule.op is not None:
        return node.op == rule.op
    return node.path == rule.path or node.path.endswith("." + str(rule.path))


def check_init_paths(inits: list[InitRule], graph: Graph, network: ast.NetworkDef) -> None:
    """Each ``init PATH...`` rule must name a module of the network; one written for a
    module under an ``if`` that was false this time is let be."""
    unmade: set[str] | None = None
    for rule in inits:
        if rule.path is None or any(rule_matches(rule, n) for n in graph.nodes()):
            continue
        if unmade is None:  # labels the body writes under an if that was false
            unmade = written_labels(network) - {
                n.path.split(".")[0] for n in graph.nodes() if n.path
            }
        if rule.path.split(".")[0] in unmade:
            continue  # a rule for a module this instance does not have
        paths = [n.path for n in graph.nodes() if n.path]
        raise ArchNameError(
            f"init: no module named '{rule.path}'{did_you_mean(rule.path, paths)}", rule.span
        )


_SCALING_NAMES = ["width", "depth", "resolution", "phi", "alpha", "beta", "gamma"]


def compound_scaling(
    clauses: list[ast.ScaleClause],
    bind: Callable[[ast.ScaleClause, list[str]], dict[str, Any]],
) -> Scaling:
    """Multiply the ``scaled(...)`` clauses of a derivation chain together; ``bind(clause,
    names)`` binds a clause's arguments to ``names``.

    ``scaled(width=, depth=, resolution=)`` give multipliers directly;
    ``scaled(phi=, alpha=1.2, beta=1.1, gamma=1.15)`` derives them by the compound
    coefficient of the EfficientNet paper: depth alpha^phi, width beta^phi,
    resolution gamma^phi.
    """
    width = depth = resolution = 1.0
    for clause in clauses:
        args = bind(clause, _SCALING_NAMES)
        for k, v in args.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 and k != "phi":
                raise ArchTypeError(
                    f"scaled(): {k} must be a positive number, got {show(v)}",
                    next(a.span for a in clause.args if a.name == k or a.name is None),
                )
        if "phi" in args:
            if {"width", "depth", "resolution"} & args.keys():
                raise ArchTypeError(
                    "scaled(): give either phi or width/depth/resolution", clause.span
                )
            phi = args["phi"]
            if abs(phi) > 16:
                raise ArchLimitError(
                    f"scaled(): phi {phi} is out of range (|phi| <= 16)", clause.span
                )
            depth *= args.get("alpha", 1.2) ** phi
            width *= args.get("beta", 1.1) ** phi
            resolution *= args.get("gamma", 1.15) ** phi
        else:
            if {"alpha", "beta", "gamma"} & args.keys():
                raise ArchTypeError("scaled(): alpha, beta and gamma go with phi", clause.span)
            width *= args.get("width", 1.0)
            depth *= args.get("depth", 1.0)
            resolution *= args.get("resolution", 1.0)
    for k, v in (("width", width), ("depth", depth), ("resolution", resolution)):
        if not 1e-3 <= v <= 1e3:
            raise ArchLimitError(
                f"scaled(): {k} multiplier {v:g} is out of range", clauses[-1].span
            )
    return Scaling(width, depth, resolution)


MAIN_OUTPUT = "out"  # the main output's name, in Outputs and in ``outputs(...)``


def output_fields(
    stmt: ast.OutputsStmt | None,
    main: str,
    sides: dict[str, str],
    side_spans: dict[str, Span],
    network: ast.NetworkDef,
    values: Mapping[str, str] | None = None,
    labels: Iterable[str] = (),
) -> dict[str, str]:
    """The fields of a network's outputs, in order: field name -> node id.

    With side outputs, what training mode returns: without an ``outputs`` statement the
    main output (``out``), then each side output by its label; with one, the fields it
    names: every output exactly once, the main output first. A field for a side output the
    network writes but did not make (under an ``if`` that was false:
    ``googlenet(aux_logits=false)``) is left out; without any side output the network
    returns its main output alone, in training mode too.

    Without side outputs, an ``outputs`` statement names values the network returns in
    both modes beside its main output (``values``: field source -> node id, the
    references and labels the elaborator resolved), in any order, the main output
    among them. ``labels``: the network's top-level labels, for suggestions."""
    if stmt is None:
        fields = {MAIN_OUTPUT: main, **sides}
        for name in sides:
            _check_field_name(name, side_spans[name], "side output")
        return fields
    values = values or {}
    written = side_labels(network)
    if written:
        value = next((f for f in stmt.fields if f.source in values), None)
        if value is not None:
            raise ArchTypeError(
                f"outputs: '{value.source}' is not a side output: a network with side outputs "
                "returns them in training mode and its main output alone in eval mode, so "
                "its outputs(...) names those only",
                value.source_span,
            )
    elif not values:
        raise ArchTypeError(
            f"outputs(...) names the main output alone; network '{network.name}' has no side "
            f"outputs: name the values it returns beside '{MAIN_OUTPUT}' "
            f"(outputs({MAIN_OUTPUT}, p3=@fpn.p3)), or leave the statement out",
            stmt.span,
        )
    sources = {MAIN_OUTPUT: main, **sides, **values}
    fields = {}
    listed: dict[str, Span] = {}
    for f in stmt.fields:
        if f.source not in sources and f.source not in written:
            known = [*sources, *written, *labels]
            raise ArchNameError(
                f"outputs: network '{network.name}' has no output named '{f.source}'"
                f"{did_you_mean(f.source, known)}; "
                + (
                    f"it has {_listing([*sides, *(w for w in written if w and w not in sides)])}"
                    if written
                    else "name a value of it by its label or path (p3=@fpn.p3)"
                ),
                f.source_span,
            )
        if f.source in listed:
            raise ArchNameError(
                f"outputs: '{f.source}' is listed twice; the first at {listed[f.source]}",
                f.source_span,
            )
        if f.name in fields:
            raise ArchNameError(f"outputs: two fields named '{f.name}'", f.span)
        _check_field_name(f.name, f.span, "outputs:")
        listed[f.source] = f.source_span
        if f.source in sources:
            fields[f.name] = sources[f.source]
    if values:
        if MAIN_OUTPUT not in listed:
            written_fields = ", ".join(
                f.name if f.name == f.source else f"{f.name}={f.source}" for f in stmt.fields
            )
            raise ArchNameError(
                f"outputs: list the main output '{MAIN_OUTPUT}' too, the value of the "
                f"network's last statement (outputs({written_fields}, {MAIN_OUTPUT})): what "
                "is computed after the last value returned would be computed for nothing",
                stmt.span,
            )
        return fields
    first = stmt.fields[0]
    if first.source != MAIN_OUTPUT:
        raise ArchNameError(
            f"outputs: list the main output '{MAIN_OUTPUT}' first, as in "
            f"outputs(logits={MAIN_OUTPUT}, ...): training code reads outputs[0] as the result",
            first.span,
        )
    missing = [name for name in {MAIN_OUTPUT: main, **sides} if name not in listed]
    if missing:
        which = ", ".join(f"'{m}'" for m in missing)
        raise ArchNameError(
            f"outputs: {which} not listed; list every output of network '{network.name}' once: "
            f"{_listing(sides)}",
            stmt.span,
        )
    return fields if sides else {}


def side_labels(network: ast.NetworkDef) -> set[str]:
    """The labels of the side outputs a network's body writes, made or not (a label
    computed by an expression counts as a side output whose name is not known here)."""
    labels = set()
    for node in ast.walk(network.body):
        if isinstance(node, ast.SideItem):
            parts = node.label.parts
            labels.add(parts[0] if len(parts) == 1 and isinstance(parts[0], str) else "")
    return labels


def written_labels(network: ast.NetworkDef) -> set[str]:
    """The plain labels a network's own body writes, whether or not elaboration made the
    layers (one under an ``if`` that was false is not made)."""
    labels = set()
    for node in ast.walk(network.body):
        if isinstance(node, (ast.Item, ast.SideItem)) and node.label is not None:
            parts = node.label.parts
            if len(parts) == 1 and isinstance(parts[0], str):
                labels.add(parts[0])
    return labels


def _listing(sides: Iterable[str]) -> str:
    return f"'{MAIN_OUTPUT}' (the main output), " + ", ".join(f"'{s}'" for s in sides)


def _check_field_name(name: str, span: Span, what: str) -> None:
    """A field of the training-mode Outputs, a namedtuple: no leading ``_``, no Python
    keyword, and not ``names`` (its property)."""
    if name == MAIN_OUTPUT and what == "side output":
        raise ArchNameError(
            f"a side output cannot be labelled '{MAIN_OUTPUT}': that names the main output", span
        )
    if name.startswith("_") or keyword.iskeyword(name) or name == "names":
        why = (
            "it is a Python keyword"
            if keyword.iskeyword(name)
            else "'names' is its property"
            if name == "names"
            else "no field starts with '_'"
        )
        fix = (
            f"; name its field with outputs({MAIN_OUTPUT}, ..., other={name})"
            if what == "side output"
            else ""
        )
        raise ArchNameError(
            f"{what} '{name}' cannot name a field: training mode returns a namedtuple, and "
            f"{why}{fix}",
            span,
        )
