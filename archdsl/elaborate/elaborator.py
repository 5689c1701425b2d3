"""Elaboration: a network definition plus parameter values -> a shape-checked graph IR.

Shapes are inferred as nodes are created, with the same per-op rules as the
``infer_shapes`` pass, because the language can branch on them (``in.c``).

Naming (the state_dict contract, see docs/design.md): a label is the path segment of
what it labels; a block instance, a ``seq`` or a labelled group opens a namespace whose
unlabelled members are numbered 0, 1, 2 ... counting every member, like nn.Sequential;
unlabelled groups, merges, conditionals and loops are transparent.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from archdsl.elaborate.binding import (
    BlockFrame,
    arg_exprs,
    bind_args,
    bind_network,
    block_frame,
    frame_values,
    op_attrs,
)
from archdsl.elaborate.evaluate import MODULE_STEPS, Budget, Env, check_assert, evaluate
from archdsl.elaborate.labels import label_text
from archdsl.elaborate.loader import BlockRef, NetworkRef, SpecModule
from archdsl.elaborate.network_rules import (
    MAIN_OUTPUT,
    InitRule,
    check_init_paths,
    compound_scaling,
    init_rule,
    output_fields,
    side_labels,
)
from archdsl.elaborate.shape_errors import (
    check_dims,
    merge_shape_error,
    op_shape_error,
)
from archdsl.elaborate.values import (
    InShape,
    Scaling,
    did_you_mean,
    show,
    type_name,
    unknown_layer,
)
from archdsl.errors import (
    ArchError,
    ArchLimitError,
    ArchNameError,
    ArchShapeError,
    ArchTypeError,
    Span,
    together,
)
from archdsl.frontend import ast
from archdsl.frontend.parser import ref_text
from archdsl.ir import Graph, OpNode, Scope
from archdsl.ops import PARAMETER_OPS, get_op
from archdsl.ops.base import OpDef, ShapeProblem, SizeOf

MAX_REPEAT = 10_000
MAX_NODES = 200_000
MAX_BLOCK_DEPTH = 48
MAX_SCOPE_DEPTH = 64  # nested modules: blocks, seqs and labelled groups each add one
# Nested chains: every block or seq body, if/for body, merge branch and (group) adds one.
MAX_CHAIN_DEPTH = 160


@dataclass
class _Namespace:
    path: str
    counter: int = 0
    labels: dict[str, Span] = field(default_factory=dict)

    def join(self, segment: str) -> str:
        return f"{self.path}.{segment}" if self.path else segment


class Elaborator:
    """Builds one network's graph. Not reusable: make one per network instance."""

    def __init__(self) -> None:
        self.graph: Graph | None = None
        self.ns: list[_Namespace] = []
        self.block_stack: list[tuple[str, Span]] = []
        self.scaling = Scaling()
        self.budget = Budget()  # evaluation steps: every Env of this network shares it
        self.depth = 0  # chains being elaborated, one inside the other
        self.side_spans: dict[str, Span] = {}  # side output -> its label, for errors
        self.inits: list[InitRule] = []  # the network's init rules, in order
        self._plain_labels: dict[int, tuple[ast.Label, str]] = {}  # id -> (label, its name)
        self._frames: dict[int, tuple[ast.BlockDef, BlockFrame]] = {}  # id -> (block, frame)
        # references (@path): the block instances they resolve in (the network's root
        # first), the module paths made so far, and the (from, to) namespaces each crossed
        self.roots: list[str] = [""]
        self.entries: list[str] = ["input"]  # the input node of each (what @in names)
        self.made: dict[str, str] = {}  # module path -> node id
        self.crossings: set[tuple[str, str]] = set()

    # ---- networks -------------------------------------------------------------------
    def network(
        self, ref: NetworkRef, overrides: Mapping[str, Any], span: Span | None = None
    ) -> Graph:
        defn, module, values, scales, aliases = bind_network(ref, overrides, self.budget)
        try:
            return self._network(ref, defn, module, values, scales)
        except ArchError as e:
            # The network was named through aliases (``network r = resnet(layers=[...])``):
            # an error in its body, often caused by the alias's arguments, says where.
            if e.source is None:
                if overrides:  # --set on the command line, params= in Python
                    given = ", ".join(f"{name}={show(values[name])}" for name in overrides)
                    e.notes.append(f"{given} set by the caller")
                e.calls.extend(("network", defn.name, alias.base_span) for alias in aliases)
            raise

    def _network(
        self,
        ref: NetworkRef,
        defn: ast.NetworkDef,
        module: SpecModule,
        values: dict[str, Any],
        scales: list[ast.ScaleClause],
    ) -> Graph:
        self.scaling = self._scaling(scales)
        env = module.env.child(values, scaling=self.scaling, budget=self.budget)
        graph = Graph(name=ref.defn.name, input_shape=())
        graph.params = dict(values)
        graph.scaling = {
            "width": self.scaling.width,
            "depth": self.scaling.depth,
            "resolution": self.scaling.resolution,
        }
        graph.span = ref.defn.span
        self.graph = graph
        self.ns = [_Namespace("")]
        cur: str | None = None
        inits = self.inits = []
        outputs: ast.OutputsStmt | None = None
        for stmt in defn.body.stmts:
            if isinstance(stmt, ast.InputStmt):
                if cur is not None:
                    first = next(n for n in graph.nodes() if n.op == "input")
                    raise ArchTypeError(
                        f"a network has exactly one input statement; the first is at {first.span}",
                        stmt.span,
                    )
                shape = self._input_shape(evaluate(stmt.shape, env), stmt.shape.span)
                if self.scaling.resolution != 1.0 and len(shape) == 3:
                    r = self.scaling.resolution
                    shape = (shape[0], max(1, round(shape[1] * r)), max(1, round(shape[2] * r)))
                cur = graph.add(OpNode("input", "input", {}, None, stmt.span, shape), []).id
                graph.input_shape = shape
                env = env.child(in_shape=InShape(shape))
                if stmt.chain is not None:
                    cur = self._stmt(stmt.chain, env, cur)
            elif isinstance(stmt, ast.Assign):
                env.set(stmt.name, evaluate(stmt.value, env))
            elif isinstance(stmt, ast.AssertStmt):
                check_assert(stmt, env)
            elif isinstance(stmt, ast.InitStmt):
                inits.append(self._init_rule(stmt, env))
            elif isinstance(stmt, ast.OutputsStmt):
                if outputs is not None:
                    raise ArchTypeError(
                        f"a network has one outputs statement; the first is at {outputs.span}",
                        stmt.span,
                    )
                outputs = stmt
            else:
                if cur is None:
                    raise ArchTypeError(
                        f"network '{defn.name}' needs 'input [C, H, W]' before its first layer",
                        stmt.span,
                    )
                cur = self._stmt(stmt, env, cur)
        if cur is None:
            raise ArchTypeError(
                f"network '{defn.name}' has no 'input [C, H, W]' statement", defn.span
            )
        graph.output = cur
        values = self._output_values(outputs, env, defn) if outputs is not None else {}
        graph.open_scopes(crossed_scopes(graph.scopes, self.crossings))
        if outputs is not None or graph.side_outputs:
            labels = [p for p in (*self.made, *graph.scopes, *graph.points) if "." not in p]
            graph.output_fields = output_fields(
                outputs, cur, graph.side_outputs, self.side_spans, defn, values, labels
            )
        check_init_paths(inits, graph, defn)
        graph.init = tuple(inits)  # type: ignore[assignment]
        return graph

    def _scaling(self, clauses: list[ast.ScaleClause]) -> Scaling:
        def bind(clause: ast.ScaleClause, names: list[str]) -> dict[str, Any]:
            return bind_args(clause.args, names, "scaled", Env({}, budget=self.budget), clause.span)

        return compound_scaling(clauses, bind)

    def _input_shape(self, value: Any, span: Span) -> tuple[int, ...]:
        if (
            not isinstance(value, tuple)
            or not 1 <= len(value) <= 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        ):
            raise ArchTypeError(
                f"input must be a list of 1 to 3 positive integers like [3, 224, 224], got {show(value)}",
                span,
            )
        check_dims(tuple(value), span)
        return tuple(value)

    def _init_rule(self, stmt: ast.InitStmt, env: Env) -> InitRule:
        def bind(names: list[str]) -> dict[str, Any]:
            return bind_args(stmt.args, names, f"init function '{stmt.fn}'", env, stmt.span)

        return init_rule(stmt, bind)

    # ---- statements and chains --------------------------------------------------------
    def _body(self, body: ast.Body, env: Env, cur: str) -> str:
        for stmt in body.stmts:
            cur = self._stmt(stmt, env, cur)
        return cur

    def _stmt(self, stmt: ast.Node, env: Env, cur: str) -> str:
        self.budget.spend(1, stmt.span)
        if isinstance(stmt, ast.Assign):
            env.set(stmt.name, evaluate(stmt.value, env))
            return cur
        if isinstance(stmt, ast.AssertStmt):
            check_assert(stmt, env)
            return cur
        if isinstance(stmt, ast.InitStmt) and len(self.ns) == 1 and not self.block_stack:
            self.inits.append(self._init_rule(stmt, env))  # under an if of the network's body
            return cur
        if isinstance(stmt, ast.Chain):
            if self.depth >= MAX_CHAIN_DEPTH:
                raise ArchLimitError(
                    f"chains nested deeper than {MAX_CHAIN_DEPTH} (each block or seq body, if or "
                    f"for body, merge branch and parenthesised group is one level)",
                    stmt.span,
                )
            self.depth += 1
            try:
                for k, item in enumerate(stmt.items):
                    if k and isinstance(item.primary, ast.Ref):
                        raise ArchTypeError(
                            "a reference starts a chain: here it would drop the value of "
                            "what comes before it (start a new line or a group with it)",
                            item.primary.span,
                        )
                    if isinstance(item, ast.SideItem):
                        self._side(item, env, cur)
                    else:
                        cur = self._item(item, env, cur)
            finally:
                self.depth -= 1
            return cur
        if isinstance(stmt, ast.InitStmt):
            raise ArchTypeError(
                "'init' statements belong in a network's body (at its top, or under an if or for "
                "there), not in a block or seq",
                stmt.span,
            )
        what = {ast.InputStmt: "input", ast.OutputsStmt: "outputs"}.get(type(stmt), "this")
        raise ArchTypeError(f"'{what}' statements belong at the top of a network body", stmt.span)

    def _item(self, item: ast.Item, env: Env, cur: str) -> str:
        prim = item.primary
        if isinstance(prim, ast.Ref) and (item.label is not None or item.repeat is not None):
            raise ArchTypeError(
                "a reference is a value computed elsewhere: it takes no label and no repetition",
                item.span,
            )
        count = 1 if item.repeat is None else self._count(item.repeat, env)
        if item.label is None:
            return self._repeat(item, count, env, cur)
        ns = self.ns[-1]
        label = self._label(item.label, env)
        label_span = item.label.span
        if label in ns.labels:
            raise ArchNameError(
                f"duplicate name '{label}' in {ns.path or 'the network'} (first used at {ns.labels[label]})",
                label_span,
            )
        ns.labels[label] = label_span
        ns.counter += 1
        path = ns.join(label)
        if item.repeat is None and isinstance(prim, ast.OpCall):
            target = self._resolve_call(prim, env)
            if isinstance(target, BlockRef):
                return self._block(prim, target, env, cur, path)
            if not target.functional:  # a labelled function: a group named so, as a merge
                return self._op(prim, target, env, cur, path)
        if item.repeat is None and isinstance(prim, ast.Seq):
            with self._namespace(path, "seq", "seq", prim.span, cur) as scope:
                cur = self._body(prim.body, env.child(), cur)
                scope.output = cur
            return cur
        with self._namespace(path, "group", label, item.span, cur) as scope:
            cur = self._repeat(item, count, env, cur)
            scope.output = cur
        if scope.output == scope.input:  # `p2: ()`: a name for the value, no module
            assert self.graph is not None
            self.graph.points[path] = cur
        return cur

    def _repeat(self, item: ast.Item, count: int, env: Env, cur: str) -> str:
        """The item's primary ``count`` times in a row (``x N``), a step each."""
        if item.repeat is None:
            return self._unlabelled(item.primary, env, cur)
        budget = self.budget
        try:
            budget.spend(count, item.span)
            for _ in range(count):
                cur = self._unlabelled(item.primary, env, cur)
        except ArchLimitError as e:
            budget.blame(e, item.span)
            raise
        return cur

    def _side(self, item: ast.SideItem, env: Env, cur: str) -> None:
        """A training-only side output, computed from ``cur``; the chain goes on from ``cur``."""
        assert self.graph is not None
        if len(self.ns) != 1 or self.block_stack:
            raise ArchTypeError(
                "side outputs belong in a network's body, not inside a block or seq", item.span
            )
        as_item = ast.Item(item.span, item.label, item.primary, None)
        out = self._item(as_item, env, cur)
        name = self._label(item.label, env)
        if "-" in name:
            raise ArchNameError(
                f"side output '{name}': its label names a field of the training-mode outputs,"
                " so it has letters, digits and _ only (no '-')",
                item.label.span,
            )
        if out == cur:
            raise ArchTypeError(f"side output '{name}' computes nothing", item.span)
        made = self.graph.node(out)
        if made.op in PARAMETER_OPS and made.path == name:  # no module to skip in eval mode
            raise ArchTypeError(
                f"side output '{name}' is a {made.op} alone, which has no module of its own; "
                f"label it inside a group: side {name}: (gamma: {made.op}(...))",
                item.span,
            )
        self.graph.side_outputs[name] = out
        self.side_spans[name] = item.label.span

    def _output_values(
        self, stmt: ast.OutputsStmt, env: Env, defn: ast.NetworkDef
    ) -> dict[str, str]:
        """The nodes of the values an ``outputs(...)`` statement names beside the main and
        side outputs, by field source: references (``p3=@fpn.p3``), and labels of the
        network's modules and points (``p3``), as references at the network's end."""
        assert self.graph is not None
        sides = side_labels(defn)
        values = {}
        for f in stmt.fields:
            if f.ref is not None:
                values[f.source] = self._ref(f.ref, env, at_end=True)
            elif f.source != MAIN_OUTPUT and f.source not in sides:
                path = f.source
                if path in self.made or path in self.graph.scopes or path in self.graph.points:
                    values[f.source] = self._ref(ast.Ref(f.source_span, (path,)), env)
        return values

    def _ref(self, ref: ast.Ref, env: Env, at_end: bool = False) -> str:
        """The node a reference ``@path`` names: a module (or scope) made earlier in the
        same block instance, or in the network when outside any block."""
        assert self.graph is not None
        root = self.roots[-1]
        if not ref.parts:  # @in: the input of the block instance, made in the scope around it
            self._cross(root, self.entries[-1])
            return self.entries[-1]
        text = self._ref_path(ref, env)
        path = f"{root}.{text}" if root else text
        where = f"block '{self.block_stack[-1][0]}'" if self.block_stack else "the network"
        if any(ns.path == path for ns in self.ns):
            raise ArchNameError(
                f"'@{text}' is read inside '{text}' itself, which has no value until it ends",
                ref.span,
            )
        scope = self.graph.scopes.get(path)
        # a scope's output is read where the scope is called, a point's where it is named:
        # in the namespace around either; an op's in its own
        node = scope.output if scope is not None else self.graph.points.get(path)
        home = path.rpartition(".")[0]
        if node is None and path in self.made:
            node = self.made[path]
            home = self.graph.node(node).scope
        if node is None:
            prefix = f"{root}." if root else ""
            depth = path.count(".")  # the paths of as many parts, in the same block instance
            known = [
                p.removeprefix(prefix)
                for p in (*self.made, *self.graph.points, *self.graph.scopes)
                if p.startswith(prefix) and p.count(".") == depth
            ]
            err = ArchNameError(
                f"'@{text}': {where} has no module '{text}'"
                f"{'' if at_end else ' before this point'}"
                f"{did_you_mean(text, known)}",
                ref.span,
            )
            if root:
                err.notes.append(
                    "a reference inside a block names that block's own modules, by their "
                    "paths from the block"
                )
            raise err
        if not root and text.split(".", 1)[0] in self.side_spans:
            raise ArchTypeError(
                f"'@{text}' is inside side output '{text.split('.', 1)[0]}', which is computed "
                "in training mode only",
                ref.span,
            )
        self._cross(home, node)
        return node

    def _ref_path(self, ref: ast.Ref, env: Env) -> str:
        """A reference's path from its block instance: labels (interpolated), numbers, and
        parts computed (``@features.{k + 1}``: a number, or a label's text)."""
        parts = []
        for p in ref.parts:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, ast.Label):
                parts.append(self._label(p, env))
            else:
                value = evaluate(p, env)
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, str))
                    or (isinstance(value, int) and value < 0)
                ):
                    raise ArchTypeError(
                        "a part of a module path computed in {...} is a number (a member's, "
                        f"from 0) or a label, not {type_name(value)} {show(value)}",
                        p.span,
                    )
                parts.append(str(value))
        return ".".join(parts)

    def _cross(self, home: str, node: str) -> None:
        """Record that ``node``, computed in namespace ``home``, is read here. The
        namespaces around here whose input it is already have it (their forward's
        argument: ASPP's pooling branch reading its block's input), so only the ones above
        them are crossed."""
        assert self.graph is not None
        k = len(self.ns) - 1
        while k > 0 and self.ns[k].path != home:
            scope = self.graph.scopes.get(self.ns[k].path)
            if scope is None or scope.input != node:
                break
            k -= 1
        if home != self.ns[k].path:
            self.crossings.add((home, self.ns[k].path))

    def _label(self, label: ast.Label, env: Env) -> str:
        if len(label.parts) == 1 and isinstance(label.parts[0], str):
            # a plain name: checked once per label of the spec, not once per layer made
            cached = self._plain_labels.get(id(label))
            if cached is not None and cached[0] is label:
                return cached[1]
            name = label_text(label, env)
            self._plain_labels[id(label)] = (label, name)
            return name
        return label_text(label, env)

    def _unlabelled(self, prim: ast.Node, env: Env, cur: str) -> str:
        if isinstance(prim, ast.OpCall):
            target = self._resolve_call(prim, env)
            if isinstance(target, OpDef) and target.functional:  # no module: no number
                return self._op(prim, target, env, cur, None)
            ns = self.ns[-1]
            path = ns.join(str(ns.counter))
            ns.counter += 1
            if isinstance(target, BlockRef):
                return self._block(prim, target, env, cur, path)
            if target.name in PARAMETER_OPS:
                raise ArchTypeError(
                    f"{target.name} needs a label: its parameter is the enclosing block's own, "
                    f"named by the label (torchvision's 'layer_scale: {target.name}(1e-6)', "
                    f"timm's 'gamma: {target.name}(1e-6, flat=true)')",
                    prim.span,
                )
            return self._op(prim, target, env, cur, path)
        if isinstance(prim, ast.Seq):
            ns = self.ns[-1]
            path = ns.join(str(ns.counter))
            ns.counter += 1
            with self._namespace(path, "seq", "seq", prim.span, cur) as scope:
                cur = self._body(prim.body, env.child(), cur)
                scope.output = cur
            return cur
        if isinstance(prim, ast.Group):
            return self._stmt(prim.chain, env, cur)
        if isinstance(prim, ast.Ref):
            return self._ref(prim, env)
        if isinstance(prim, ast.Merge):
            return self._merge(prim, env, cur)
        if isinstance(prim, ast.If):
            body = prim.then if self._condition(prim.cond, env, "if") else prim.other
            return cur if body is None else self._body(body, env.child(), cur)
        if isinstance(prim, ast.For):
            values = evaluate(prim.iterable, env)
            if not isinstance(values, tuple):
                raise ArchTypeError(
                    f"'for' needs a list, got {type_name(values)} {show(values)}",
                    prim.iterable.span,
                )
            budget = self.budget
            try:
                budget.spend(len(values), prim.span)
                for v in values:
                    cur = self._body(prim.body, env.child({prim.var: v}), cur)
            except ArchLimitError as e:
                budget.blame(e, prim.span)
                raise
            return cur
        raise ArchTypeError(f"unexpected {type(prim).__name__}", prim.span)  # pragma: no cover

    def _count(self, expr: ast.Expr, env: Env) -> int:
        n = evaluate(expr, env)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ArchTypeError(
                f"repetition count must be a non-negative integer, got {show(n)}", expr.span
            )
        if n > MAX_REPEAT:
            raise ArchLimitError(
                f"repetition count {n} exceeds the limit of {MAX_REPEAT}", expr.span
            )
        return n

    @contextlib.contextmanager
    def _namespace(self, path: str, kind: str, name: str, span: Span, cur: str) -> Iterator[Scope]:
        assert self.graph is not None
        self.budget.spend(MODULE_STEPS, span)
        if len(self.ns) > MAX_SCOPE_DEPTH:
            raise ArchLimitError(
                f"modules nested deeper than {MAX_SCOPE_DEPTH} (each block, seq and labelled "
                f"group is a module inside the one around it)",
                span,
            )
        scope = Scope(path, kind, name, span, input=cur, output=cur)
        self.graph.scopes[path] = scope
        self.ns.append(_Namespace(path))
        try:
            yield scope
        finally:
            self.ns.pop()
        if scope.output == scope.input:
            del self.graph.scopes[path]  # nothing inside: no module

    # ---- ops, blocks and merges ---------------------------------------------------
    def _resolve_call(self, call: ast.OpCall, env: Env) -> BlockRef | OpDef:
        # env.lookup without its KeyError: most layers are ops, names no frame binds
        target = None
        frame: Env | None = env
        while frame is not None:
            if call.name in frame.names:
                target = frame.names[call.name]
                break
            frame = frame.parent
        if isinstance(target, BlockRef):
            return target
        opdef = get_op(call.name)
        if opdef is not None:
            return opdef
        if isinstance(target, NetworkRef):
            raise ArchTypeError(
                f"'{call.name}' is a network; only blocks and ops can be layers", call.name_span
            )
        blocks = [n for n in env.visible() if isinstance(_safe_lookup(env, n), BlockRef)]
        raise ArchNameError(unknown_layer(call.name, blocks), call.name_span)

    def _op(self, call: ast.OpCall, opdef: OpDef, env: Env, cur: str, path: str | None) -> str:
        assert self.graph is not None
        inputs = [cur]
        if any(a.value.__class__ is ast.RefArg for a in call.args):
            call = self._sized_by(call, opdef, env, inputs)
        attrs = op_attrs(call, opdef, env)
        producer = self.graph.node(cur)
        try:
            shape = tuple(opdef.infer(attrs, [self.graph.node(i).shape for i in inputs]))
        except ShapeProblem as e:
            sized = [self.graph.node(i) for i in inputs[1:]]
            raise op_shape_error(e, opdef.name, path, call.span, producer, *sized) from None
        check_dims(shape, call.span)
        return self._add(
            OpNode(
                self.graph.new_id(opdef.name),
                opdef.name,
                attrs,
                path,
                call.span,
                shape,
                self.ns[-1].path,
                arg_exprs(call, opdef.param_names),
            ),
            inputs,
        )

    def _sized_by(self, call: ast.OpCall, opdef: OpDef, env: Env, inputs: list[str]) -> ast.OpCall:
        """``call`` with its reference argument (``resize(@backbone.4)``) replaced by the
        :class:`SizeOf` it gives, the value it names appended to ``inputs``."""
        names = opdef.param_names
        args = list(call.args)
        for i, a in enumerate(args):
            if a.value.__class__ is not ast.RefArg:
                continue
            ref = cast(ast.RefArg, a.value).ref
            name = a.name or (names[i] if i < len(names) else None)
            param = next((p for p in opdef.params if p.name == name), None)
            if param is None or param.kind != "size_of":
                takes = [p.name for p in opdef.params if p.kind == "size_of"]
                where = f"{opdef.name}'s {takes[0]}" if takes else "resize's size"
                what = f"'{name}'" if name else f"argument {i + 1}"
                raise ArchTypeError(
                    f"{opdef.name}: {what} takes no reference; a reference ({ref_text(ref)}) "
                    f"gives the size of a value, which only {where} takes",
                    a.span,
                )
            if len(inputs) > 1:
                raise ArchTypeError(f"{opdef.name}: one reference per call", a.span)
            inputs.append(self._ref(ref, env))
            size = SizeOf(f"@{self._ref_path(ref, env)}" if ref.parts else "@in")
            args[i] = ast.Arg(a.name, ast.Literal(ref.span, size), a.span)
        return dataclasses.replace(call, args=tuple(args))

    def _add(self, node: OpNode, inputs: list[str]) -> str:
        assert self.graph is not None
        if len(self.graph) >= MAX_NODES:
            raise ArchLimitError(f"the network has more than {MAX_NODES} nodes", node.span)
        if node.path is not None:
            self.made[node.path] = node.id
        return self.graph.add(node, inputs).id

    def _block(self, call: ast.OpCall, ref: BlockRef, env: Env, cur: str, path: str) -> str:
        assert self.graph is not None
        defn = ref.defn
        self.budget.spend(MODULE_STEPS, call.span)  # binding; the namespace costs as much again
        if any(name == defn.name for name, _ in self.block_stack):
            trail = " -> ".join([n for n, _ in self.block_stack] + [defn.name])
            raise ArchLimitError(f"block '{defn.name}' is recursive ({trail})", call.span)
        if len(self.block_stack) >= MAX_BLOCK_DEPTH:
            raise ArchLimitError(f"blocks nested deeper than {MAX_BLOCK_DEPTH}", call.span)
        names = [p.name for p in defn.params]
        given = bind_args(call.args, names, f"block '{defn.name}'", env, call.span)
        in_shape = InShape(self.graph.node(cur).shape)
        benv = ref.module.env.child(in_shape=in_shape, scaling=self.scaling, budget=self.budget)
        for p in defn.params:
            if p.name in given:
                benv.set(p.name, given[p.name])
            elif p.default is not None:
                benv.set(p.name, evaluate(p.default, benv))
            else:
                sig = ", ".join(
                    q.name if q.default is None else f"{q.name}=..." for q in defn.params
                )
                raise ArchTypeError(
                    f"block '{defn.name}' needs a value for '{p.name}': {defn.name}({sig})",
                    call.span,
                )
        self.block_stack.append((defn.name, call.span))
        self.roots.append(path)
        self.entries.append(cur)
        try:
            with self._namespace(path, "block", defn.name, call.span, cur) as scope:
                body = benv.child()
                try:
                    cur = self._body(defn.body, body, cur)
                except ArchError as e:
                    for err in (e, *e.others):  # others: from other branches of a merge
                        if err.source is None and err.span != call.span:
                            err.calls.append(("block", defn.name, call.span))
                    raise
                scope.output = cur
                frame = self._frames.get(id(defn))
                if frame is None or frame[0] is not defn:
                    frame = self._frames[id(defn)] = (defn, block_frame(defn))
                scope.defined = defn.span
                scope.values = frame_values(frame[1], body.names, benv.names)
                scope.defaults = frame[1].defaults
        finally:
            self.block_stack.pop()
            self.roots.pop()
            self.entries.pop()
        return cur

    def _condition(self, expr: ast.Expr, env: Env, keyword: str) -> bool:
        cond = evaluate(expr, env)
        if not isinstance(cond, bool):
            raise ArchTypeError(
                f"'{keyword}' needs true or false, got {type_name(cond)} {show(cond)}", expr.span
            )
        return cond

    def _merge(self, merge: ast.Merge, env: Env, cur: str) -> str:
        assert self.graph is not None
        if len(merge.branches) < 2:
            raise ArchTypeError(
                f"{merge.kind} needs at least two branches, one per line or separated by ';' "
                f"(write 'identity' for a branch that passes its input on)",
                merge.span,
            )
        if merge.cond is not None and not self._condition(merge.cond, env, "if"):
            # `add if c { (); f }` with c false: the branches written () are left out
            kept = tuple(b for b in merge.branches if not _passes_on(b))
            if len(kept) < 2:
                return cur if not kept else self._stmt(kept[0], env.child(), cur)
            merge = dataclasses.replace(merge, branches=kept, cond=None)
        outs, errors = [], []
        for branch in merge.branches:  # each from the same input: their errors are independent
            try:
                outs.append(self._stmt(branch, env.child(), cur))
            except (ArchNameError, ArchShapeError, ArchTypeError) as e:
                errors.append(e)
        if errors:
            raise together(errors)
        opdef = get_op(merge.kind)
        assert opdef is not None
        producers = [self.graph.node(o) for o in outs]
        try:
            shape = tuple(opdef.infer({}, [p.shape for p in producers]))
        except ShapeProblem as e:
            passed_on = outs.index(cur) if cur in outs else None
            raise merge_shape_error(e, merge, self.graph, producers, passed_on) from None
        check_dims(shape, merge.span)
        return self._add(
            OpNode(
                self.graph.new_id(merge.kind),
                merge.kind,
                {},
                None,
                merge.span,
                shape,
                self.ns[-1].path,
            ),
            outs,
        )


def crossed_scopes(scopes: Mapping[str, Scope], crossings: set[tuple[str, str]]) -> set[str]:
    """The scopes to open so that each value read by a reference is in reach: for a value
    made in namespace ``home`` and read in ``reader``, every scope from either down to the
    namespace around both is left (its value read out of it) or entered (a value read into
    it), and a scope has one input and one output."""
    opened: set[str] = set()
    for home, reader in crossings:
        a, b = home.split(".") if home else [], reader.split(".") if reader else []
        common = 0
        while common < min(len(a), len(b)) and a[common] == b[common]:
            common += 1
        for parts in (a, b):
            for end in range(common + 1, len(parts) + 1):
                path = ".".join(parts[:end])
                if path in scopes:
                    opened.add(path)
    return opened


def _passes_on(branch: ast.Chain) -> bool:
    """Whether a merge's branch is written ``()``: its input, passed on."""
    if len(branch.items) != 1:
        return False
    item = branch.items[0]
    return (
        isinstance(item, ast.Item)
        and item.label is None
        and item.repeat is None
        and isinstance(item.primary, ast.Group)
        and not item.primary.chain.items
    )


def _safe_lookup(env: Env, name: str) -> Any:
    try:
        return env.lookup(name)
    except KeyError:
        return None
