"""Resolve: the unknown names of a spec, all of them, before anything is elaborated.

The elaborator stops at the first error. Unknown names are independent of one another and
known from the text alone, so this pass finds every one with lexical scoping, as the
elaborator would meet them: a name in an expression must be a parameter, an earlier
assignment, a loop or comprehension variable, or a top-level name of the file (its
constants, blocks, networks and imported names); a layer must be an op of the registry
(:mod:`archdsl.ops`) or a block; a function a builtin; ``in`` used inside a block or after
a network's ``input``; an attribute of ``in`` one it has.

It does not guess: a layer named by a local variable (which may hold a block) is left to
the elaborator, and so is anything the parameters decide.

Two questions, one walk:

- :func:`certain_errors` -- the errors elaborating one network is *certain* to meet (or
  would meet once the errors before them are fixed): only code that always runs, from the
  network's body into the blocks it always calls; not the branches of ``if``, loop bodies,
  repetitions by a computed count, the right of ``and``/``or``, the arms of ``a if c else
  b``, defaults that an argument replaces. ``archdsl.check`` attaches them to the error the
  elaborator raises (``err.others``), so one run reports them all; a spec that elaborates
  never gets one.
- :func:`unknown_names` -- every unknown name in the definitions of one file, whether or not
  it runs, for the linter (a typo in a branch these parameters do not take).

>>> from archdsl.elaborate.loader import Loader
>>> module = Loader().load_source(
...     "block b(k) { conv(k, 3) -> rleu }\\n"
...     "network n { input [3, 8, 8]; b(wdith) -> pool(2) }"
... )
>>> for err in certain_errors(module, module.names["n"]):
...     print(err)
<string>:1:28: error: unknown op or block 'rleu'; did you mean 'relu'?
<string>:2:32: error: unknown name 'wdith'
<string>:2:42: error: unknown op or block 'pool'; did you mean 'maxpool'?
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from archdsl.elaborate.builtins import BUILTINS, SCALING_BUILTINS
from archdsl.elaborate.loader import BlockRef, NetworkRef, SpecModule
from archdsl.elaborate.network_rules import INIT_FUNCTIONS
from archdsl.elaborate.values import did_you_mean, unknown_layer
from archdsl.errors import ArchError, ArchNameError, ArchTypeError, Span
from archdsl.frontend import ast
from archdsl.ops import get_op

IN_ATTRIBUTES = ("c", "h", "w", "shape", "rank")  # and "f", a synonym of "c" for flat inputs


@dataclass(frozen=True)
class Binding:
    """A local name a definition binds."""

    name: str
    span: Span
    kind: str  # "parameter", "local", "loop variable", "comprehension variable"


def certain_errors(
    module: SpecModule, network: NetworkRef, given: Collection[str] = ()
) -> list[ArchError]:
    """The unknown names elaborating ``network`` (from ``module``, the checked file) certainly
    meets, in source order (the checked file first); ``given`` names the parameters the
    caller sets, whose defaults are then not evaluated."""
    walker = _Walker(everything=False)
    walker.network(network, set(given))
    while walker.calls:
        ref, args = walker.calls.pop()
        walker.block(ref, args)
    return walker.errors(module.path)


def unknown_names(module: SpecModule) -> list[ArchError]:
    """Every unknown name in the blocks and networks ``module`` defines, in source order,
    run or not."""
    walker = _Walker(everything=True)
    for d in module.ast.defs:
        if isinstance(d, ast.BlockDef):
            walker.block(BlockRef(d, module), None)
        elif isinstance(d, (ast.NetworkDef, ast.NetworkAlias)):
            walker.network(NetworkRef(d, module), set(), follow=False)
    return [e for e in walker.errors(module.path) if e.span.path == module.path]


def bindings(module: SpecModule, defn: ast.BlockDef | ast.NetworkDef) -> list[Binding]:
    """The local names ``defn`` binds, in source order: parameters, assignments, loop and
    comprehension variables."""
    walker = _Walker(everything=True)
    if isinstance(defn, ast.BlockDef):
        walker.block(BlockRef(defn, module), None)
    else:
        walker.network(NetworkRef(defn, module), set(), follow=False)
    return walker.bound


# ---- scopes ------------------------------------------------------------------------------


class _Scope:
    """The names visible at a point: local frames over a file's top-level names."""

    def __init__(
        self, top: Mapping[str, Any], parent: _Scope | None = None, has_in: bool = False
    ) -> None:
        self.top = top
        self.parent = parent
        self.has_in = has_in
        self.names: set[str] = set()

    def child(self, has_in: bool | None = None) -> _Scope:
        return _Scope(self.top, self, self.has_in if has_in is None else has_in)

    def is_local(self, name: str) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.names:
                return True
            scope = scope.parent
        return False

    def knows(self, name: str) -> bool:
        return name in self.top or self.is_local(name)

    def visible(self) -> list[str]:
        out = set(self.top)
        scope: _Scope | None = self
        while scope is not None:
            out |= scope.names
            scope = scope.parent
        return sorted(out)


def _name_span(span: Span, name: str) -> Span:
    """The span of a name that starts ``span`` (a parameter, an assignment's target)."""
    return Span(span.path, span.line, span.column, span.line, span.column + len(name))


def _given(args: tuple[ast.Arg, ...], names: list[str]) -> set[str]:
    """The parameters ``args`` set: by position, then by keyword."""
    return {
        a.name if a.name is not None else names[i]
        for i, a in enumerate(args)
        if a.name is not None or i < len(names)
    }


def _runs_once_at_least(repeat: ast.Expr | None) -> bool:
    if repeat is None:
        return True
    value = repeat.value if isinstance(repeat, ast.Literal) else None
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# ---- the walk ----------------------------------------------------------------------------


class _Walker:
    """Walks definitions with their scopes, collecting unknown names (``found``), local
    bindings (``bound``) and, when only certain code is walked, the blocks it always calls
    (``calls``, visited afterwards: a worklist, so a long chain of blocks costs no stack)."""

    def __init__(self, everything: bool) -> None:
        self.everything = everything  # walk code that may not run, too
        self.found: dict[tuple[Span, str], ArchError] = {}
        self.bound: list[Binding] = []
        self.calls: list[tuple[BlockRef, set[str]]] = []
        self.seen_bodies: set[int] = set()
        self.seen_defaults: set[tuple[int, str]] = set()

    def errors(self, path: str) -> list[ArchError]:
        def key(e: ArchError) -> tuple[bool, str, int, int]:
            return (e.span.path != path, e.span.path, e.span.line, e.span.column)

        return sorted(self.found.values(), key=key)

    def _error(self, err: ArchError, module: SpecModule) -> None:
        if err.span.path == module.path:
            err.source = module.source
        self.found.setdefault((err.span, err.message), err)

    def _bind(self, scope: _Scope, name: str, span: Span | None, kind: str) -> None:
        scope.names.add(name)
        if span is not None:
            self.bound.append(Binding(name, span, kind))

    # ---- definitions
    def network(self, ref: NetworkRef, given: set[str], follow: bool = True) -> None:
        """A network: the aliases leading to its definition, then its parameters and body."""
        aliases: list[ast.NetworkAlias] = []
        while isinstance(ref.defn, ast.NetworkAlias) and ref.defn not in aliases:
            alias, module = ref.defn, ref.module
            aliases.append(alias)
            for a in alias.args:
                self.expr(a.value, _Scope(module.names), module)
            for clause in alias.scales:  # evaluated with no names at all
                for a in clause.args:
                    self.expr(a.value, _Scope({}), module)
            target = module.names.get(alias.base)
            if not isinstance(target, NetworkRef):
                nets = [n for n, v in module.names.items() if isinstance(v, NetworkRef)]
                what = "unknown network" if target is None else "not a network:"
                msg = f"{what} '{alias.base}'{did_you_mean(alias.base, nets)}"
                self._error(ArchNameError(msg, alias.base_span), module)
                return
            if not follow:
                return
            ref = target
        if not isinstance(ref.defn, ast.NetworkDef):
            return  # a cycle of aliases: the elaborator says so
        names = [p.name for p in ref.defn.params]
        for alias in aliases:
            given |= _given(alias.args, names)
        defn, module = ref.defn, ref.module
        scope = _Scope(module.names)
        for p in defn.params:
            if p.default is not None and (p.name not in given or self.everything):
                self.expr(p.default, scope, module)
            self._bind(scope, p.name, _name_span(p.span, p.name), "parameter")
        for stmt in defn.body.stmts:
            if isinstance(stmt, ast.InputStmt):
                self.expr(stmt.shape, scope, module)
                scope = scope.child(has_in=True)
                if stmt.chain is not None:
                    self.chain(stmt.chain, scope, module)
            elif isinstance(stmt, ast.InitStmt):
                self.init(stmt, scope, module)
            elif isinstance(stmt, ast.Chain) and not scope.has_in:
                # a layer before 'input' is refused; once moved after it, 'in' is defined
                self.chain(stmt, scope.child(has_in=True), module)
            else:
                self.stmt(stmt, scope, module)

    def block(self, ref: BlockRef, given: set[str] | None) -> None:
        """A block's parameters (the defaults ``given`` leaves to evaluate) and its body,
        each once."""
        defn, module = ref.defn, ref.module
        scope = _Scope(module.names, has_in=True)
        first_visit = id(defn) not in self.seen_bodies
        self.seen_bodies.add(id(defn))
        for p in defn.params:
            key = (id(defn), p.name)
            if p.default is not None and (given is None or p.name not in given):
                if key not in self.seen_defaults:
                    self.seen_defaults.add(key)
                    self.expr(p.default, scope, module)
            span = _name_span(p.span, p.name) if first_visit else None
            self._bind(scope, p.name, span, "parameter")
        if first_visit:
            self.body(defn.body, scope.child(), module)

    def init(self, stmt: ast.InitStmt, scope: _Scope, module: SpecModule) -> None:
        if stmt.tensor not in ("weight", "bias"):
            msg = f"init: tensor must be 'weight' or 'bias', got '{stmt.tensor}'"
            self._error(ArchNameError(msg, stmt.span), module)
        if stmt.fn not in INIT_FUNCTIONS:
            msg = f"unknown init function '{stmt.fn}'{did_you_mean(stmt.fn, INIT_FUNCTIONS)}"
            self._error(ArchNameError(msg, stmt.span), module)
        for a in stmt.args:
            self.expr(a.value, scope, module)

    # ---- statements and chains
    def body(self, body: ast.Body, scope: _Scope, module: SpecModule) -> None:
        for stmt in body.stmts:
            self.stmt(stmt, scope, module)

    def stmt(self, stmt: ast.Node, scope: _Scope, module: SpecModule) -> None:
        if isinstance(stmt, ast.Assign):
            self.expr(stmt.value, scope, module)
            self._bind(scope, stmt.name, _name_span(stmt.span, stmt.name), "local")
        elif isinstance(stmt, ast.Chain):
            self.chain(stmt, scope, module)
        elif isinstance(stmt, ast.AssertStmt):
            self.expr(stmt.cond, scope, module)
        elif isinstance(stmt, ast.InitStmt):
            self.init(stmt, scope, module)
        # 'input' out of place (and 'init' inside a block): the elaborator refuses it

    def chain(self, chain: ast.Chain, scope: _Scope, module: SpecModule) -> None:
        for item in chain.items:
            if item.label is not None:
                for part in item.label.parts:
                    if isinstance(part, ast.Expr):
                        self.expr(part, scope, module)
            if isinstance(item, ast.Item) and item.repeat is not None:
                self.expr(item.repeat, scope, module)
            if isinstance(item, ast.SideItem) or _runs_once_at_least(item.repeat):
                self.primary(item.primary, scope, module)
            elif self.everything:
                self.primary(item.primary, scope, module)

    def primary(self, prim: ast.Node, scope: _Scope, module: SpecModule) -> None:
        if isinstance(prim, ast.OpCall):
            self.call(prim, scope, module)
        elif isinstance(prim, ast.Group):
            self.chain(prim.chain, scope, module)
        elif isinstance(prim, ast.Merge):
            if prim.cond is not None:
                self.expr(prim.cond, scope, module)
            for branch in prim.branches:
                self.chain(branch, scope.child(), module)
        elif isinstance(prim, ast.Seq):
            self.body(prim.body, scope.child(), module)
        elif isinstance(prim, ast.If):
            self.expr(prim.cond, scope, module)
            if self.everything:
                for body in (prim.then, prim.other):
                    if body is not None:
                        self.body(body, scope.child(), module)
        elif isinstance(prim, ast.For):
            self.expr(prim.iterable, scope, module)
            if self.everything:
                inner = scope.child()
                self._bind(inner, prim.var, prim.var_span, "loop variable")
                self.body(prim.body, inner, module)

    def call(self, call: ast.OpCall, scope: _Scope, module: SpecModule) -> None:
        """A layer: a block or an op. A local name may hold a block: not ours to judge."""
        for a in call.args:
            self.expr(a.value, scope, module)
        name = call.name
        if scope.is_local(name):
            return
        target = scope.top.get(name)
        if isinstance(target, BlockRef):
            if not self.everything:
                self.calls.append((target, _given(call.args, [p.name for p in target.defn.params])))
        elif get_op(name) is not None:
            return
        elif isinstance(target, NetworkRef):
            msg = f"'{name}' is a network; only blocks and ops can be layers"
            self._error(ArchTypeError(msg, call.name_span), module)
        else:
            blocks = [n for n, v in scope.top.items() if isinstance(v, BlockRef)]
            self._error(ArchNameError(unknown_layer(name, blocks), call.name_span), module)

    # ---- expressions
    def expr(self, expr: ast.Expr, scope: _Scope, module: SpecModule) -> None:
        """Every name ``expr`` reads (those always evaluated, unless walking everything);
        iterative, in source order."""
        stack: list[tuple[ast.Expr, _Scope]] = [(expr, scope)]
        while stack:
            e, sc = stack.pop()
            for err in self._names(e, sc):
                self._error(err, module)
            stack.extend(reversed(list(self._subexpressions(e, sc))))

    def _names(self, e: ast.Expr, scope: _Scope) -> Iterator[ArchError]:
        if isinstance(e, ast.Name) and not scope.knows(e.id):
            hint = did_you_mean(e.id, [*scope.visible(), *BUILTINS, *SCALING_BUILTINS])
            yield ArchNameError(f"unknown name '{e.id}'{hint}", e.span)
        elif isinstance(e, ast.InRef) and not scope.has_in:
            yield ArchNameError("'in' is only defined inside a block or network body", e.span)
        elif (
            isinstance(e, ast.Attr)
            and isinstance(e.base, ast.InRef)
            and scope.has_in
            and e.name not in (*IN_ATTRIBUTES, "f")
        ):
            hint = did_you_mean(e.name, IN_ATTRIBUTES)
            yield ArchNameError(f"'in' has no attribute '{e.name}'{hint}", e.span)
        elif isinstance(e, ast.Call) and e.func not in BUILTINS and e.func not in SCALING_BUILTINS:
            hint = did_you_mean(e.func, [*BUILTINS, *SCALING_BUILTINS])
            yield ArchNameError(f"unknown function '{e.func}'{hint}", e.span)

    def _subexpressions(self, e: ast.Expr, scope: _Scope) -> Iterator[tuple[ast.Expr, _Scope]]:
        """The parts of ``e`` to walk, each with its scope."""
        everything = self.everything
        if isinstance(e, ast.Comprehension):
            yield e.iterable, scope
            if everything:
                inner = scope.child()
                self._bind(inner, e.var, e.var_span, "comprehension variable")
                if e.cond is not None:
                    yield e.cond, inner
                yield e.expr, inner
        elif isinstance(e, ast.Ternary):
            yield e.cond, scope
            if everything:
                yield e.then, scope
                yield e.other, scope
        elif isinstance(e, ast.BinOp) and e.op in ("and", "or"):
            yield e.left, scope
            if everything:
                yield e.right, scope
        else:
            for child in ast.children(e):
                yield (child.value if isinstance(child, ast.Arg) else child), scope  # type: ignore[misc]
