"""The analysis behind the ``.py`` output: which scopes become classes, with which members
and constructor parameters.

* A scope (block instance, ``seq``, labelled group) whose members are numbered ``0, 1, ...``
  and form a plain chain is written inline as ``nn.Sequential(...)``, as torchvision does.
* Other scopes become classes; instances with the same structure (same members, same
  wiring) share one class. Constructor arguments that differ between the instances become
  the class's parameters (``in_channels``, ``stride``, ``conv1_out_channels`` ...); those
  that never differ are written as literals.
* Stateless members numbered by the language (an unlabelled ``relu``) take a readable
  attribute name inside a class, and unlabelled ``identity`` members disappear: neither
  has a state_dict entry, so the keys are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archdsl.backends import torch_modules
from archdsl.backends.python_exprs import derive, input_width, offsets, spec_expr
from archdsl.backends.python_forward import TAKEN, forward_body, identifier
from archdsl.backends.python_layout import flat
from archdsl.backends.python_leaves import CHANNEL_ARGS, NO_DEFAULT, Leaf, leaf
from archdsl.backends.python_plan import ClassParam, ClassPlan, Member
from archdsl.backends.torch_backend import _ROOT, _Layout, _local, camel, in_place
from archdsl.backends.torch_modules import build_parameter
from archdsl.frontend import ast
from archdsl.ir import Graph
from archdsl.ops import PARAMETER_OPS

ROOT = _ROOT
"""The root scope's path."""

__all__ = ["ROOT", "Analysis", "ClassParam", "ClassPlan", "Member"]


class Analysis:
    """The classes of a checked graph: every scope's members, which scopes are inline
    ``nn.Sequential``s, and the class (with parameter values) of every other scope."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.layout = _Layout(graph)
        self.modules: dict[str, nn.Module] = {}
        self.parameters: dict[str, nn.Parameter] = {}  # those that are a block's own
        # the sums the compiled module computes as `second += first`
        self.swapped = frozenset(k for k, i in in_place(graph, self.layout).items() if i == 1)
        self.leaves: dict[str, Leaf] = {}
        self.inline: dict[str, bool] = {}
        self.class_of: dict[str, ClassPlan] = {}
        self.classes: list[ClassPlan] = []
        self._by_signature: dict[Any, ClassPlan] = {}
        self.members: dict[str, list[Member]] = {}
        self.param_values: dict[str, dict[str, Any]] = {}  # scope path -> param -> value
        with torch.device("meta"):
            for node in graph.nodes():
                if node.op in PARAMETER_OPS:  # the block's own parameter: no module
                    shapes = [graph.node(i).shape for i in graph.inputs(node.id)]
                    self.parameters[node.id] = build_parameter(node.op, node.attrs, shapes)
                    self.leaves[node.id] = leaf(node, None, shapes)
                elif node.path is not None:
                    shapes = [graph.node(i).shape for i in graph.inputs(node.id)]
                    module = torch_modules.build_module(node.op, dict(node.attrs), shapes)
                    self.modules[node.id] = module
                    self.leaves[node.id] = leaf(node, module, shapes)
        self._visit(ROOT, graph.node("input").id, graph.output)
        for cls in self.classes:
            self._parametrise(cls)

    # -- structure ----------------------------------------------------------------------
    def _members(self, scope: str) -> list[Member]:
        out = []
        for kind, obj in self.layout.items[scope]:
            if kind == "scope":
                out.append(Member(_local(obj.path, scope), [obj.input], obj.output, scope=obj))
            elif obj.path is not None:
                out.append(
                    Member(
                        _local(obj.path, scope),
                        self.graph.inputs(obj.id),
                        obj.id,
                        node=obj,
                        module=self.modules.get(obj.id),
                        leaf=self.leaves[obj.id],
                    )
                )
            else:
                out.append(Member("", self.graph.inputs(obj.id), obj.id, node=obj))
        return out

    def _visit(self, scope: str, input_id: str, output_id: str) -> None:
        members = self._members(scope)
        self.members[scope] = members
        for m in members:
            if m.scope is not None:
                self._visit(m.scope.path, m.scope.input, m.scope.output)
        if scope != ROOT and _is_chain(members, input_id, output_id):
            self.inline[scope] = True
            for m in members:
                m.attr = m.name
            return
        self.inline[scope] = False
        self._name_attrs(members)
        lines, values = forward_body(
            members,
            input_id,
            output_id,
            self.graph.side_outputs if scope == ROOT else {},
            self.graph.output_fields if scope == ROOT else None,
            self.swapped,
        )
        signature = (
            "root" if scope == ROOT else self.graph.scopes[scope].kind,
            "" if scope == ROOT else self.graph.scopes[scope].name,
            tuple(prefix + flat(expr) for prefix, expr in lines),
            tuple((m.attr, self._template(m)) for m in members if m.attr and not m.shared),
        )
        cls = self._by_signature.get(signature)
        if cls is None:
            if scope == ROOT:
                name, kind, block, span = (
                    camel(self.graph.name),
                    "root",
                    self.graph.name,
                    self.graph.span,
                )
            else:
                s = self.graph.scopes[scope]
                label = s.path.rsplit(".", 1)[-1]  # "features"; "3" for an unlabelled seq
                base = camel(s.name if s.kind == "block" or label[0].isdigit() else label)
                span = s.defined if s.defined is not None else s.span  # a block: its definition
                name, kind, block = base, s.kind, s.name
            cls = ClassPlan(name, kind, block, span, members, lines)
            cls.shortcut = any(
                m.node is not None and m.node.op == "add" and input_id in m.inputs
                for m in members
                if m.leaf is None
            )
            self._by_signature[signature] = cls
            self.classes.append(cls)
        cls.instances.append(scope)
        cls.shapes.append([self.graph.node(v).shape if v else None for v in values])
        self.class_of[scope] = cls

    def _name_attrs(self, members: list[Member]) -> None:
        """Attribute names: the local name, or for a stateless numbered member a readable
        one (``relu``, ``relu_2``); unlabelled identities become aliases (no attribute)."""
        used = {m.name for m in members if m.name}
        shared: dict[str, str] = {}  # repr of a renamed stateless module -> its attribute
        for m in members:
            if not m.name:
                continue
            stateless = m.module is not None and not _has_state(m.module)
            if m.name.isdigit() and stateless:
                if isinstance(m.module, nn.Identity):
                    continue  # an alias: the forward reads its input directly
                assert m.node is not None and m.module is not None
                if repr(m.module) in shared:  # one ReLU serves every unlabelled relu
                    m.attr, m.shared = shared[repr(m.module)], True
                    continue
                base = m.node.op if identifier(m.node.op) else "layer"
                attr, i = base, 1
                while attr in used or attr in TAKEN or hasattr(nn.Module, attr):
                    i += 1
                    attr = f"{base}_{i}"
                used.add(attr)
                m.attr = shared[repr(m.module)] = attr
            else:
                m.attr = m.name

    def _template(self, m: Member) -> Any:
        if m.leaf is not None:
            return (m.leaf.func, tuple(a for a, _, _ in m.leaf.args))
        assert m.scope is not None
        if self.inline[m.scope.path]:
            return ("seq", tuple(self._template(c) for c in self.members[m.scope.path]))
        return ("class", id(self.class_of[m.scope.path]))

    # -- parameters ---------------------------------------------------------------------
    def _slots(self, members: list[Member], prefix: str = "", named: str = "") -> list[_Slot]:
        """Every constructor argument below ``members`` (``prefix`` is their path in the
        class, ``named`` the same as a start of a name)."""
        out = []
        for m in members:
            if not m.attr or m.shared:
                continue
            where = prefix + m.attr
            qualifier = named + _name_part(m)
            if m.leaf is not None:
                for arg, value, _ in m.leaf.args:
                    expr = spec_expr(m.node, arg) if m.node is not None else None
                    # a width the spec writes as the block's input width is one (a channel
                    # slice's stop=in.c)
                    kind = "channels" if arg in CHANNEL_ARGS or input_width(expr) else arg
                    slot = _Slot((where, arg), kind, value, qualifier=qualifier, expr=expr)
                    out.append(slot)
            elif m.scope is not None and self.inline[m.scope.path]:
                out += self._slots(self.members[m.scope.path], where + ".", qualifier + "_")
            elif m.scope is not None:
                child = self.class_of[m.scope.path]
                values = self.param_values[m.scope.path]
                for p in child.params:
                    slot = _Slot((where, p.name), p.kind, values[p.name], p.word, qualifier)
                    out.append(slot)
        return out

    def _parametrise(self, cls: ClassPlan) -> None:
        """Make the constructor arguments that differ between instances parameters, named
        as the spec names their values where it does (``hidden``, ``ch3x3red``)."""
        per_instance = [self._slots(self.members[path]) for path in cls.instances]
        in_c = tuple(self._scope_channels(path, "in") for path in cls.instances)
        out_c = tuple(self._scope_channels(path, "out") for path in cls.instances)
        words = self._words(cls.instances)
        scope = self.graph.scopes.get(cls.instances[0])
        own = set(scope.values) if scope is not None else set()  # the block's own names
        by_value: dict[tuple[Any, ...], ClassParam] = {}
        for i, slot in enumerate(per_instance[0]):
            vector = tuple(inst[i].value for inst in per_instance)
            if all(v == vector[0] and type(v) is type(vector[0]) for v in vector[1:]):
                continue  # the same everywhere: a literal
            word = None
            if slot.kind != "channels" or vector not in (in_c, out_c):
                passed = [inst[i].expr for inst in per_instance]
                word = _word(slot, vector, words, passed, own)
            if slot.kind != "channels" and all(_computed(inst[i]) for inst in per_instance):
                word = None  # the spec computes it: another name's equal values are chance
            same = ("word", word, _hashable(vector)) if word else (slot.kind, _hashable(vector))
            param = by_value.get(same)
            if param is None:
                name = word or _param_name(slot, vector, in_c, out_c)
                param = ClassParam(
                    name, slot.kind, vector, slot.key, slot.qualifier, word=word is not None
                )
                by_value[same] = param
                cls.params.append(param)
            cls.slots[slot.key] = param
        _name_widths(cls, per_instance, words, own)
        derive(self, cls, in_c, out_c, words)
        offsets(cls, in_c, out_c)
        _unique_names(cls.params)
        self._defaults(cls)
        for i, path in enumerate(cls.instances):
            self.param_values[path] = {p.name: p.values[i] for p in cls.params}

    def _defaults(self, cls: ClassPlan) -> None:
        """Give a parameter named after one of the block's own parameters that block
        parameter's literal default, and move it after those without one. Such parameters
        are never channel counts, which calls pass by position, so calls still pass the
        others by position and these by name, and may leave them out."""
        if cls.scope_kind != "block":
            return
        defaults = self.graph.scopes[cls.instances[0]].defaults
        for p in cls.params:
            value = defaults.get(p.name, NO_DEFAULT)
            if p.word and p.kind != "channels" and value is not NO_DEFAULT and value is not None:
                p.default = value
        cls.params.sort(key=lambda p: p.default is not NO_DEFAULT)

    def _words(self, paths: list[str]) -> dict[str, tuple[Any, ...]]:
        """The names the spec gives numbers in every one of the scopes ``paths`` (a block's
        parameters and locals, then those of the blocks written inline inside it), each
        with its value per scope; the outermost binding of a name counts."""
        frames = [self._frame(path) for path in paths]
        words: dict[str, tuple[Any, ...]] = {}
        for name in frames[0]:
            if all(name in f for f in frames[1:]) and identifier(name) and name not in TAKEN:
                words[name] = tuple(f[name] for f in frames)
        return words

    def _frame(self, path: str) -> dict[str, Any]:
        scope = self.graph.scopes.get(path)
        values = scope.values if scope else {}
        frame = {k: v for k, v in values.items() if type(v) in (int, float) or _numbers(v)}
        for m in self.members.get(path, []):
            if m.scope is not None and self.inline[m.scope.path]:
                for k, v in self._frame(m.scope.path).items():
                    frame.setdefault(k, v)
        return frame

    def _scope_channels(self, path: str, end: str) -> Any:
        if path == ROOT:
            return None
        s = self.graph.scopes[path]
        shape = self.graph.node(s.input if end == "in" else s.output).shape
        return shape[0] if shape else None


def _hashable(vector: tuple[Any, ...]) -> Any:
    """``vector``, or its repr when it holds a dict or list (a registered op's attributes
    and input shapes)."""
    try:
        hash(vector)
    except TypeError:
        return repr(vector)
    return vector


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _is_chain(members: list[Member], input_id: str, output_id: str) -> bool:
    """Members ``0, 1, 2 ...``, each fed by the one before: an ``nn.Sequential``."""
    if not members:
        return False
    prev = input_id
    for i, m in enumerate(members):
        if m.name != str(i) or m.inputs != [prev]:
            return False
        prev = m.output
    return prev == output_id


@dataclass
class _Slot:
    """One constructor argument inside a class: where it goes, its kind and value, and
    whether it fills a parameter the spec named (of a child class)."""

    key: tuple[str, str]  # (member path, argument)
    kind: str
    value: Any
    word: bool = False
    qualifier: str = ""  # the member path as the start of a name
    expr: ast.Expr | None = None  # the spec's expression for a leaf's argument, if not literal


def _computed(slot: _Slot) -> bool:
    """Whether the spec computes the slot's value rather than passing a name or literal."""
    return slot.expr is not None and not isinstance(slot.expr, ast.Name)


def _word(
    slot: _Slot,
    vector: tuple[Any, ...],
    words: dict[str, tuple[Any, ...]],
    exprs: list[ast.Expr | None],
    own: set[str],
) -> str | None:
    """The spec's name for a parameter's values: the name of the class's own block that
    the spec passes in every instance (SqueezeNet's `e3`, though `e1` has the same
    values), else the argument's own name if the spec uses it for them, else the first
    name bound to exactly them (same values, same types)."""
    if not all(type(v) in (int, float) or _numbers(v) for v in vector):
        return None
    matches = [
        name
        for name, values in words.items()
        if values == vector and all(type(a) is type(b) for a, b in zip(values, vector))
    ]
    if not matches:
        return None
    passed = {e.id if isinstance(e, ast.Name) else None for e in exprs}
    if len(passed) == 1 and (name := passed.pop()) in matches and name in own:
        return name
    return slot.key[1] if slot.key[1] in matches else matches[0]


def _name_widths(
    cls: ClassPlan,
    per_instance: list[list[_Slot]],
    words: dict[str, tuple[Any, ...]],
    own: set[str],
) -> None:
    """One parameter, not two of equal values, where the spec passes one of the block's own
    names both as a width and as another argument: ConvNeXt's depthwise ``conv(dim, 7,
    groups=dim)`` on a ``dim``-wide input is ``Block(dim)`` (every slot of that width, the
    input's too), not ``Block(in_channels, dim)``. A width passed by name alone keeps the
    name of the block's input or output width."""
    for i, slot in enumerate(per_instance[0]):
        param = cls.slots.get(slot.key)
        if param is None or param.kind != "channels" or param.word:
            continue
        passed = {
            e.id if isinstance(e, ast.Name) else None for e in (s[i].expr for s in per_instance)
        }
        name = passed.pop() if len(passed) == 1 else None
        other = next((p for p in cls.params if p.name == name and p is not param), None)
        if name not in own or other is None:
            continue
        if words.get(name) != param.values or other.values != param.values:
            continue
        for key, filled in cls.slots.items():
            if filled is other:
                cls.slots[key] = param
        cls.params.remove(other)
        param.name, param.word = name, True


def _numbers(value: Any) -> bool:
    return type(value) is tuple and all(type(v) in (int, float) for v in value)


def _param_name(
    slot: _Slot, vector: tuple[Any, ...], in_c: tuple[Any, ...], out_c: tuple[Any, ...]
) -> str:
    """``in_channels`` / ``out_channels`` for the block's own input and output widths,
    otherwise the argument's name, qualified by its member for other channel counts
    (unless it fills a parameter the spec named)."""
    if slot.kind == "channels" and vector == in_c:
        return "in_channels"
    if slot.kind == "channels" and vector == out_c:
        return "out_channels"
    arg = slot.key[1]
    qualify = slot.kind == "channels" and not slot.word
    return f"{slot.qualifier}_{arg}" if qualify else arg


def _name_part(m: Member) -> str:
    """A member's attribute as part of a name: a numbered one after what it is
    (``conv1`` for ``1``, ``seq_3`` for ``3``), since a name cannot start with a digit."""
    if not m.attr[:1].isdigit():
        return m.attr.replace("-", "_")  # torchvision's RegNet: block1-0
    what = m.node.op if m.node is not None else m.scope.name if m.scope is not None else "layer"
    return f"{what}_{m.attr}" if what[-1:].isdigit() else f"{what}{m.attr}"


def _unique_names(params: list[ClassParam]) -> None:
    """Qualify a name that two parameters share with each one's member path."""
    counts: dict[str, int] = {}
    for p in params:
        counts[p.name] = counts.get(p.name, 0) + 1
    taken = {p.name for p in params}
    for p in params:
        if counts[p.name] > 1:
            new = f"{p.qualifier}_{p.name}"
            while new in taken:
                new += "_"
            taken.add(new)
            p.name = new
