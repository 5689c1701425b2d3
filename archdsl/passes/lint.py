"""Lint: warnings about a spec that is valid but probably not what its author meant.

Six rules, each named by a ``code``:

- ``unused-block``: a block defined in the checked file that nothing in the file
  instantiates (a file without networks is a library: its blocks are for importers);
- ``unused-parameter``: a block or network parameter its body never reads;
- ``shadowed-name``: a parameter, local assignment, loop or comprehension variable that hides a
  top-level name (constant, block, network, imported name) or a builtin function;
- ``conv-bias-before-bn``: a conv with a bias whose output goes straight into batch norm,
  which subtracts the mean and so cancels the bias (write ``bias=false``);
- ``unused-value``: a layer whose output nothing reads and the network does not return: the
  end of a chain that the next chain, starting from a reference (``@stem -> ...``), leaves
  behind;
- ``unknown-name``: an unknown name in code that the checked network does not run (an
  untaken branch, an unused block, another network): a typo all the same
  (:func:`archdsl.passes.resolve.unknown_names`; in code that runs it is an error).

Warnings are reported only for the checked file, never for the files it imports. A name
that starts with ``_`` is exempt from the unused and shadowing rules.

>>> from archdsl.elaborate.loader import Loader
>>> module = Loader().load_source("block b(k) { conv(8, 3) -> bn }")
>>> [w.code for w in lint(module)]
['unused-parameter', 'conv-bias-before-bn']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from archdsl.elaborate.builtins import BUILTINS, SCALING_BUILTINS
from archdsl.elaborate.loader import BlockRef, SpecModule
from archdsl.errors import Span, source_lines
from archdsl.frontend import ast
from archdsl.ir import Graph
from archdsl.ir.graph import describe
from archdsl.ops import get_op
from archdsl.passes.resolve import bindings, unknown_names

BUILTIN_FUNCTIONS = frozenset({*BUILTINS, *SCALING_BUILTINS})
BN_OPS = frozenset({"bn", "batchnorm"})


@dataclass(frozen=True)
class LintWarning:
    """One warning: where, what, and the rule (``code``) that found it."""

    span: Span
    message: str
    code: str

    def __str__(self) -> str:
        return f"{self.span}: warning: {self.message}"


def lint(module: SpecModule, graphs: Iterable[Graph] = ()) -> list[LintWarning]:
    """The warnings for one loaded spec file, sorted by position.

    ``graphs`` are networks elaborated from it; with them, a conv whose ``bias`` is an
    expression or whose batch norm follows in another block or statement is found too.
    """
    rules = (
        _unused_blocks(module),
        _unused_parameters(module),
        _shadowed_names(module),
        _conv_bias_before_bn(module, list(graphs)),
        _unused_values(module, list(graphs)),
        _unknown_names(module),
    )
    found = {(w.span, w.code): w for rule in rules for w in rule}  # one per place and rule
    return sorted(found.values(), key=lambda w: (w.span.line, w.span.column, w.code))


# ---- definitions ---------------------------------------------------------------------


def _definitions(module: SpecModule) -> list[ast.BlockDef | ast.NetworkDef]:
    return [d for d in module.ast.defs if isinstance(d, (ast.BlockDef, ast.NetworkDef))]


# ---- unused blocks -----------------------------------------------------------------------


def _unused_blocks(module: SpecModule) -> Iterator[LintWarning]:
    defs = module.ast.defs
    if not any(isinstance(d, (ast.NetworkDef, ast.NetworkAlias)) for d in defs):
        return  # a library: its blocks are for the files that import it
    called = {
        n.name for d in _definitions(module) for n in ast.walk(d.body) if isinstance(n, ast.OpCall)
    }
    for d in defs:
        if isinstance(d, ast.BlockDef) and d.name not in called and not d.name.startswith("_"):
            span = _word_span(module, d.span, d.name, after="block")
            yield LintWarning(span, f"block '{d.name}' is never used", "unused-block")


def _word_span(module: SpecModule, span: Span, word: str, after: str = "") -> Span:
    """The span of ``word`` in the source, first found after ``after`` from ``span``'s start
    on its line (``block NAME``, ``for VAR``), for the caret; ``span`` if not found."""
    lines = source_lines(module.source)
    if not 0 < span.line <= len(lines):
        return span
    text = lines[span.line - 1]
    start = span.column - 1 + (len(after) if text.startswith(after, span.column - 1) else 0)
    match = re.compile(rf"\b{re.escape(word)}\b").search(text, start)
    if match is None:
        return span
    return Span(span.path, span.line, match.start() + 1, span.line, match.end() + 1)


# ---- unused parameters -------------------------------------------------------------------


def _names_read(nodes: Iterable[object]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _unused_parameters(module: SpecModule) -> Iterator[LintWarning]:
    for d in _definitions(module):
        kind = "block" if isinstance(d, ast.BlockDef) else "network"
        for i, p in enumerate(d.params):
            if p.name.startswith("_"):
                continue
            later_defaults = [q.default for q in d.params[i + 1 :] if q.default is not None]
            if p.name not in _names_read([d.body, *later_defaults]):
                yield LintWarning(
                    _param_span(p),
                    f"parameter '{p.name}' of {kind} '{d.name}' is never used",
                    "unused-parameter",
                )


def _param_span(p: ast.ParamDef) -> Span:
    s = p.span
    return Span(s.path, s.line, s.column, s.line, s.column + len(p.name))


# ---- shadowed names ----------------------------------------------------------------------


def _shadowed_names(module: SpecModule) -> Iterator[LintWarning]:
    top = module.names
    for d in _definitions(module):
        for binding in bindings(module, d):
            name, span, what = binding.name, binding.span, binding.kind
            if name.startswith("_"):
                continue
            if name in top:
                origin = module.origins.get(name)
                kind = type(top[name]).__name__
                kind = {"BlockRef": "block", "NetworkRef": "network"}.get(kind, "constant")
                where = f" defined at {origin}" if origin else ""
                message = f"{what} '{name}' hides the top-level {kind} '{name}'{where}"
            elif name in BUILTIN_FUNCTIONS:
                message = f"{what} '{name}' has the name of the builtin function '{name}()'"
            else:
                continue
            yield LintWarning(span, message, "shadowed-name")


# ---- conv with bias, then batch norm -----------------------------------------------------

CONV_OPS = ("conv", "conv_transpose")


def _conv_bias_message(op: str) -> str:
    return f"{op} has a bias but feeds batch norm, which cancels it; write bias=false"


def _conv_bias_before_bn(module: SpecModule, graphs: list[Graph]) -> Iterator[LintWarning]:
    blocks = {name for name, v in module.names.items() if isinstance(v, BlockRef)}
    for d in _definitions(module):
        for body in (n for n in ast.walk(d.body) if isinstance(n, (ast.Body, ast.Chain))):
            yield from _adjacent_conv_bn(body, blocks)
    for graph in graphs:
        for node in graph.nodes():
            if (
                node.op not in CONV_OPS
                or not node.attrs.get("bias")
                or node.span.path != module.path
            ):
                continue
            users = graph.users(node.id)
            if (
                users
                and node.id != graph.output
                and node.id not in graph.side_outputs.values()
                and all(graph.node(u).op in BN_OPS for u in users)
            ):
                yield LintWarning(node.span, _conv_bias_message(node.op), "conv-bias-before-bn")


def _unused_values(module: SpecModule, graphs: list[Graph]) -> Iterator[LintWarning]:
    for graph in graphs:
        returned = {graph.output, *graph.side_outputs.values(), *graph.output_fields.values()}
        for node in graph.nodes():
            if (
                node.span.path == module.path
                and node.op != "input"
                and node.id not in returned
                and not graph.users(node.id)
            ):
                yield LintWarning(
                    node.span,
                    f"nothing reads the output of {describe(node.op, node.path)} and the network "
                    "does not return it: the chain after it starts from a reference",
                    "unused-value",
                )


def _sequence(body: ast.Body | ast.Chain) -> list[ast.Item | ast.SideItem]:
    """The items of a chain, or of a body's successive chain statements, in order."""
    if isinstance(body, ast.Chain):
        return list(body.items)
    return [item for stmt in body.stmts if isinstance(stmt, ast.Chain) for item in stmt.items]


def _adjacent_conv_bn(body: ast.Body | ast.Chain, blocks: set[str]) -> Iterator[LintWarning]:
    """``conv(...) -> bn`` written next to each other, bias not switched off (no elaboration
    needed, so library files are linted too)."""
    items = _sequence(body)
    for first, second in zip(items, items[1:]):
        conv, bn = _op(first, blocks), _op(second, blocks)
        if (
            conv is not None
            and conv.name in CONV_OPS
            and bn is not None
            and bn.name in BN_OPS
            and _bias_on(conv)
        ):
            yield LintWarning(conv.span, _conv_bias_message(conv.name), "conv-bias-before-bn")


def _op(item: ast.Item | ast.SideItem, blocks: set[str]) -> ast.OpCall | None:
    """The op call an item is, when it is a single unrepeated op (not a block of that name)."""
    if isinstance(item, ast.SideItem) or item.repeat is not None:
        return None
    primary = item.primary
    if isinstance(primary, ast.OpCall) and primary.name not in blocks:
        return primary
    return None


def _bias_on(conv: ast.OpCall) -> bool:
    """Whether the conv certainly has a bias: no ``bias`` argument, or literally ``true``."""
    position = get_op(conv.name).param_names.index("bias")  # type: ignore[union-attr]
    for i, arg in enumerate(conv.args):
        if arg.name == "bias" or (arg.name is None and i == position):
            return isinstance(arg.value, ast.Literal) and arg.value.value is True
    return True


# ---- unknown names -----------------------------------------------------------------------


def _unknown_names(module: SpecModule) -> Iterator[LintWarning]:
    """Unknown names anywhere in the file's definitions; where the checked network runs
    them, ``check`` has already failed with them."""
    for err in unknown_names(module):
        yield LintWarning(err.span, err.message, "unknown-name")
