"""Graph IR -> standalone PyTorch source: the ``.py`` output of ``archdsl compile``.

The emitted file imports torch alone and reads like a hand-written model: one
``nn.Module`` class per distinct block structure, with a parametrised ``__init__`` and a
straight-line ``forward`` annotated with shapes (``# N x 64 x 56 x 56``, as torchvision's
GoogLeNet), and one class for the network, named after it in CamelCase. Its state_dict has
exactly the keys and shapes of the module :func:`archdsl.build` makes, so weights move
between the two with ``load_state_dict(strict=True)``.

How the classes come about:

* A scope (block instance, ``seq``, labelled group) whose members are numbered ``0, 1, ...``
  and form a plain chain is written inline as ``nn.Sequential(...)``, as torchvision does.
* Other scopes become classes; instances with the same structure (same members, same
  wiring) share one class. Constructor arguments that differ between the instances become
  the class's parameters (``in_channels``, ``stride``, ``conv1_out_channels`` ...); those
  that never differ are written as literals.
* Stateless members numbered by the language (an unlabelled ``relu``) take a readable
  attribute name inside a class, and unlabelled ``identity`` members disappear: neither
  has a state_dict entry, so the keys are unchanged.

>>> import archdsl
>>> graph = archdsl.check("network tiny { input [3, 8, 8]; c: conv(4, 3) -> relu }")
>>> print(emit_python(graph).split("class Tiny")[1].strip())  # doctest: +NORMALIZE_WHITESPACE
(nn.Module):
    \"\"\"The network ``tiny`` (<string>, line 1).\"\"\"
<BLANKLINE>
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, kernel_size=3)
        self.relu = nn.ReLU()
<BLANKLINE>
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(x)  # N x 4 x 6 x 6
        x = self.relu(x)  # N x 4 x 6 x 6
        return x
"""

from __future__ import annotations

import builtins
import functools
import inspect
import keyword
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archdsl.backends import torch_modules
from archdsl.backends.torch_backend import _ROOT, _Layout, _local, camel
from archdsl.errors import ArchTypeError
from archdsl.ir import Graph, OpNode, Scope

LINE_LENGTH = 100
INDENT = "    "

# ---- leaf modules as constructor calls -------------------------------------------------

_NO_DEFAULT = inspect.Parameter.empty
# Arguments a module stores as something else, or never needs written out.
_SKIPPED = frozenset({"device", "dtype", "return_indices"})

# Constructor arguments whose values are channel or feature counts: parameters of this kind
# may be shared by several modules of a block (a conv's out_channels is the next bn's
# num_features), and are passed positionally, as hand-written code does.
CHANNEL_ARGS = frozenset(
    {
        "in_channels",
        "out_channels",
        "num_features",
        "in_features",
        "out_features",
        "num_channels",
        "normalized_shape",
    }
)

# The module classes archdsl builds, with how many leading arguments are written
# positionally (``nn.Conv2d(64, 128, kernel_size=3)``). The arguments, their defaults and
# their order come from each class's signature, their values from the module's attributes.
# fmt: off
POSITIONAL: dict[type, int] = {
    **dict.fromkeys((nn.Conv2d, nn.Linear, nn.GroupNorm), 2),
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, torch_modules.LayerNorm2d,
                     nn.LocalResponseNorm, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), 1),
    **dict.fromkeys((nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                     nn.Tanh, nn.Identity, nn.LeakyReLU, nn.GELU, nn.Softmax, nn.MaxPool2d,
                     nn.AvgPool2d, nn.Flatten, nn.Dropout, torch_modules.GlobalPool2d,
                     torch_modules.StochasticDepth), 0),
}
# fmt: on


@dataclass(frozen=True)
class _LeafSpec:
    """How to write a module of one class as a constructor call."""

    func: str  # "nn.Conv2d", or the name of a class the file carries ("GlobalPool2d")
    positional: tuple[str, ...]
    keywords: tuple[tuple[str, Any], ...]  # (argument, default)
    helper: type | None  # an archdsl class whose source the file includes

    def values(self, module: nn.Module) -> list[tuple[str, Any, Any]]:
        """(argument, value, default) for every argument, positional ones first."""
        out = []
        for name, default in [(p, _NO_DEFAULT) for p in self.positional] + list(self.keywords):
            if name == "bias" and isinstance(default, bool):  # stored as a tensor or None
                value: Any = getattr(module, "bias", None) is not None
            else:
                value = getattr(module, name)
            if name == "normalized_shape" and len(value) == 1:
                value = value[0]
            out.append((name, _compact(value), default))
        return out


def _compact(value: Any) -> Any:
    """``(3, 3) -> 3``: how a person writes a square kernel, stride or padding."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, tuple) and value and all(v == value[0] for v in value[1:]):
        if isinstance(value[0], int):
            return value[0]
    return value


@functools.cache
def _spec_of(cls: type) -> _LeafSpec:
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self"
        and p.name not in _SKIPPED
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    n = POSITIONAL[cls]
    helper = None if cls.__module__.startswith("torch.") else cls
    return _LeafSpec(
        cls.__name__ if helper else f"nn.{cls.__name__}",
        tuple(p.name for p in params[:n]),
        tuple((p.name, p.default) for p in params[n:]),
        helper,
    )


def leaf_spec(module: nn.Module) -> _LeafSpec:
    if type(module) not in POSITIONAL:
        raise ArchTypeError(
            f"the .py output cannot write a {type(module).__name__} module as source yet"
        )
    return _spec_of(type(module))


def _is_default(arg: str, value: Any, default: Any, args: list[tuple[str, Any, Any]]) -> bool:
    if arg == "stride" and default is None and args[0][0] == "kernel_size":
        return bool(value == args[0][1])  # pooling: stride None means the kernel size
    return default is not _NO_DEFAULT and type(value) is type(default) and value == default


# ---- literals and line layout ----------------------------------------------------------


def literal(value: Any) -> str:
    """A Python literal as ruff would format it (strings in double quotes)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


@dataclass
class _Group:
    """A bracketed expression the line layout may split: ``open item, item close``."""

    open: str
    items: list[str | _Group]
    close: str


def _flat(e: str | _Group) -> str:
    if isinstance(e, str):
        return e
    return e.open + ", ".join(_flat(i) for i in e.items) + e.close


def layout_lines(e: str | _Group, indent: str, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines for ``prefix + e + suffix``, split as ruff format splits a bracketed
    expression: one line if it fits, else the contents on one indented line, else one item
    per line with a trailing comma."""
    line = indent + prefix + _flat(e) + suffix
    if len(line) <= LINE_LENGTH or isinstance(e, str) or not e.items:
        return [line]
    inner = indent + INDENT
    body = ", ".join(_flat(i) for i in e.items)
    if len(inner + body) <= LINE_LENGTH:
        return [indent + prefix + e.open, inner + body, indent + e.close + suffix]
    lines = [indent + prefix + e.open]
    for item in e.items:
        lines += layout_lines(item, inner, "", ",")
    lines.append(indent + e.close + suffix)
    return lines


# ---- the analysis: members, classes, parameters ----------------------------------------


@dataclass
class _Member:
    """One statement-worthy thing a scope owns: a leaf module, a child scope or a merge."""

    name: str  # local name (state_dict component); "" for merges
    inputs: list[str]  # value (node) ids
    output: str
    node: OpNode | None = None  # a leaf or merge
    scope: Scope | None = None  # a child scope
    module: nn.Module | None = None  # the leaf module, built on the meta device
    attr: str = ""  # attribute in the emitted class ("" for merges and aliases)
    shared: bool = False  # a stateless module another member already registered


@dataclass
class _Param:
    name: str
    kind: str  # "channels" or the argument name
    values: tuple[Any, ...]  # one per instance
    first: tuple[str, str]  # the first slot (member path, argument) it fills


@dataclass
class _Class:
    name: str
    scope_kind: str  # "root", "block", "seq" or "group"
    block: str
    span: Any
    members: list[_Member]  # of the first instance: the structure all instances share
    lines: list[tuple[str, str | _Group]]  # forward body: (prefix, expression)
    instances: list[str] = field(default_factory=list)  # scope paths
    shapes: list[list[Any]] = field(default_factory=list)  # per instance, per line
    params: list[_Param] = field(default_factory=list)
    slots: dict[tuple[str, str], _Param] = field(default_factory=dict)


def _identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


_TAKEN = frozenset({"x", "self", "torch", "nn", "F", "out"}) | frozenset(dir(builtins))


class _Analysis:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.layout = _Layout(graph)
        self.modules: dict[str, nn.Module] = {}
        self.inline: dict[str, bool] = {}
        self.class_of: dict[str, _Class] = {}
        self.classes: list[_Class] = []
        self._by_signature: dict[Any, _Class] = {}
        self.members: dict[str, list[_Member]] = {}
        self.param_values: dict[str, dict[str, Any]] = {}  # scope path -> param -> value
        with torch.device("meta"):
            for node in graph.nodes():
                if node.path is not None:
                    shapes = [graph.node(i).shape for i in graph.inputs(node.id)]
                    self.modules[node.id] = torch_modules.build_module(
                        node.op, dict(node.attrs), shapes
                    )
        self._visit(_ROOT, graph.node("input").id, graph.output)
        for cls in self.classes:
            self._parametrise(cls)

    # -- structure ----------------------------------------------------------------------
    def _members(self, scope: str) -> list[_Member]:
        out = []
        for kind, obj in self.layout.items[scope]:
            if kind == "scope":
                out.append(_Member(_local(obj.path, scope), [obj.input], obj.output, scope=obj))
            elif obj.path is not None:
                out.append(
                    _Member(
                        _local(obj.path, scope),
                        self.graph.inputs(obj.id),
                        obj.id,
                        node=obj,
                        module=self.modules[obj.id],
                    )
                )
            else:
                out.append(_Member("", self.graph.inputs(obj.id), obj.id, node=obj))
        return out

    def _visit(self, scope: str, input_id: str, output_id: str) -> None:
        members = self._members(scope)
        self.members[scope] = members
        for m in members:
            if m.scope is not None:
                self._visit(m.scope.path, m.scope.input, m.scope.output)
        if scope != _ROOT and _is_chain(members, input_id, output_id):
            self.inline[scope] = True
            for m in members:
                m.attr = m.name
            return
        self.inline[scope] = False
        self._name_attrs(members)
        lines, values = _forward(
            members,
            input_id,
            output_id,
            self.graph.side_outputs if scope == _ROOT else {},
        )
        signature = (
            "root" if scope == _ROOT else self.graph.scopes[scope].kind,
            "" if scope == _ROOT else self.graph.scopes[scope].name,
            tuple(prefix + _flat(expr) for prefix, expr in lines),
            tuple((m.attr, self._template(m)) for m in members if m.attr and not m.shared),
        )
        cls = self._by_signature.get(signature)
        if cls is None:
            if scope == _ROOT:
                name, kind, block, span = (
                    camel(self.graph.name),
                    "root",
                    self.graph.name,
                    self.graph.span,
                )
            else:
                s = self.graph.scopes[scope]
                base = camel(s.name) if s.kind == "block" else camel(s.path.rsplit(".", 1)[-1])
                name, kind, block, span = base, s.kind, s.name, s.span
            cls = _Class(name, kind, block, span, members, lines)
            self._by_signature[signature] = cls
            self.classes.append(cls)
        cls.instances.append(scope)
        cls.shapes.append([self.graph.node(v).shape if v else None for v in values])
        self.class_of[scope] = cls

    def _name_attrs(self, members: list[_Member]) -> None:
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
                base = m.node.op if _identifier(m.node.op) else "layer"
                attr, i = base, 1
                while attr in used or attr in _TAKEN or hasattr(nn.Module, attr):
                    i += 1
                    attr = f"{base}_{i}"
                used.add(attr)
                m.attr = shared[repr(m.module)] = attr
            else:
                m.attr = m.name

    def _template(self, m: _Member) -> Any:
        if m.module is not None:
            return (
                leaf_spec(m.module).func,
                tuple(a for a, _, _ in leaf_spec(m.module).values(m.module)),
            )
        assert m.scope is not None
        if self.inline[m.scope.path]:
            return ("seq", tuple(self._template(c) for c in self.members[m.scope.path]))
        return ("class", id(self.class_of[m.scope.path]))

    # -- parameters ---------------------------------------------------------------------
    def _slots(
        self, members: list[_Member], prefix: str = ""
    ) -> list[tuple[tuple[str, str], str, Any]]:
        """(slot key, kind, value) of every constructor argument below ``members``."""
        out = []
        for m in members:
            if not m.attr or m.shared:
                continue
            where = prefix + m.attr
            if m.module is not None:
                for arg, value, _ in leaf_spec(m.module).values(m.module):
                    out.append(((where, arg), "channels" if arg in CHANNEL_ARGS else arg, value))
            elif m.scope is not None and self.inline[m.scope.path]:
                out += self._slots(self.members[m.scope.path], where + ".")
            elif m.scope is not None:
                child = self.class_of[m.scope.path]
                values = self.param_values[m.scope.path]
                for p in child.params:
                    out.append(((where, p.name), p.kind, values[p.name]))
        return out

    def _parametrise(self, cls: _Class) -> None:
        """Make the constructor arguments that differ between instances parameters."""
        per_instance = [self._slots(self.members[path]) for path in cls.instances]
        in_c = tuple(self._scope_channels(path, "in") for path in cls.instances)
        out_c = tuple(self._scope_channels(path, "out") for path in cls.instances)
        by_value: dict[tuple[str, tuple[Any, ...]], _Param] = {}
        for i, (key, kind, _) in enumerate(per_instance[0]):
            vector = tuple(inst[i][2] for inst in per_instance)
            if all(v == vector[0] and type(v) is type(vector[0]) for v in vector[1:]):
                continue  # the same everywhere: a literal
            param = by_value.get((kind, vector))
            if param is None:
                param = _Param(_param_name(key, kind, vector, in_c, out_c), kind, vector, key)
                by_value[(kind, vector)] = param
                cls.params.append(param)
            cls.slots[key] = param
        _unique_names(cls.params)
        for i, path in enumerate(cls.instances):
            self.param_values[path] = {p.name: p.values[i] for p in cls.params}

    def _scope_channels(self, path: str, end: str) -> Any:
        if path == _ROOT:
            return None
        s = self.graph.scopes[path]
        shape = self.graph.node(s.input if end == "in" else s.output).shape
        return shape[0] if shape else None


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _is_chain(members: list[_Member], input_id: str, output_id: str) -> bool:
    """Members ``0, 1, 2 ...``, each fed by the one before: an ``nn.Sequential``."""
    if not members:
        return False
    prev = input_id
    for i, m in enumerate(members):
        if m.name != str(i) or m.inputs != [prev]:
            return False
        prev = m.output
    return prev == output_id


def _param_name(
    key: tuple[str, str],
    kind: str,
    vector: tuple[Any, ...],
    in_c: tuple[Any, ...],
    out_c: tuple[Any, ...],
) -> str:
    """``in_channels`` / ``out_channels`` for the block's own input and output widths,
    otherwise the argument's name, qualified by its member for other channel counts."""
    if kind == "channels" and vector == in_c:
        return "in_channels"
    if kind == "channels" and vector == out_c:
        return "out_channels"
    where, arg = key
    return f"{where.replace('.', '_')}_{arg}" if kind == "channels" else arg


def _unique_names(params: list[_Param]) -> None:
    """Qualify a name that two parameters share with each one's member path."""
    counts: dict[str, int] = {}
    for p in params:
        counts[p.name] = counts.get(p.name, 0) + 1
    taken = {p.name for p in params}
    for p in params:
        if counts[p.name] > 1:
            new = f"{p.first[0].replace('.', '_')}_{p.name}"
            while new in taken:
                new += "_"
            taken.add(new)
            p.name = new


# ---- forward --------------------------------------------------------------------------


def _forward(
    members: list[_Member], input_id: str, output_id: str, sides: dict[str, str]
) -> tuple[list[tuple[str, str | _Group]], list[str]]:
    """The forward body (without shape comments) and, per line, the value it computes."""
    alias: dict[str, str] = {}

    def resolve(v: str) -> str:
        while v in alias:
            v = alias[v]
        return v

    side_of = {node_id: name for name, node_id in sides.items()}
    stmts: list[_Member] = []
    for m in members:
        if m.name and not m.attr:  # an identity alias
            alias[m.output] = resolve(m.inputs[0])
            continue
        stmts.append(m)
    inputs = [[resolve(v) for v in m.inputs] for m in stmts]
    users: dict[str, list[int]] = {}
    side_users: dict[str, list[int]] = {}
    for i, (m, ins) in enumerate(zip(stmts, inputs)):
        for v in ins:
            (side_users if m.output in side_of else users).setdefault(v, []).append(i)
    final = resolve(output_id)
    users.setdefault(final, []).append(len(stmts))  # the return reads it

    def reuses(i: int) -> bool:
        """Whether statement ``i`` overwrites its (first) input's variable."""
        m = stmts[i]
        if m.output in side_of or not inputs[i]:
            return False
        first = inputs[i][0]
        if users.get(first) != [i] or any(j > i for j in side_users.get(first, [])):
            return False
        return True

    names: dict[str, str] = {input_id: "x"}
    live: dict[str, int] = {}  # variable -> remaining reads

    def fresh(i: int) -> str:
        m = stmts[i]
        if m.output in side_of:
            base = side_of[m.output]
        elif m.attr and _identifier(m.attr) and m.attr not in _TAKEN and not _continues(i):
            base = m.attr
        else:
            base = "out"
        name, k = base, 1
        while name in live or name in ("self", "torch", "nn", "F"):
            k += 1
            name = f"{base}{k}"
        return name

    def _continues(i: int) -> bool:
        """Whether a module call takes over statement ``i``'s variable (a chain: ``out``)."""
        out = stmts[i].output
        return any(
            reuses(j) and inputs[j][0] == out and stmts[j].module is not None
            for j in users.get(out, [])
            if j < len(stmts)
        )

    remaining = {v: len(u) + len(side_users.get(v, [])) for v, u in users.items()}
    for v, u in side_users.items():
        remaining.setdefault(v, len(u))
    live["x"] = 1
    lines: list[tuple[str, str | _Group]] = []
    values: list[str] = []
    for i, m in enumerate(stmts):
        args = [names[v] for v in inputs[i]]
        expr = _expression(m, args)
        for v in inputs[i]:
            remaining[v] -= 1
            if remaining[v] == 0:
                live.pop(names[v], None)
        # a merge takes over only a generic name: never ``branch1 = torch.cat([branch1, ...])``
        generic = args[0] == "x" or args[0].startswith("out")
        target = args[0] if reuses(i) and (m.module is not None or generic) else fresh(i)
        names[m.output] = target
        live[target] = 1
        if m.output in side_of:
            expr = f"{_flat(expr)} if self.training else None"
        lines.append((f"{target} = ", expr))
        values.append(m.output)
    if sides:
        outs = ", ".join([names[final], *(names[sides[n]] for n in sides)])
        lines += [("", "if self.training:"), ("", f"{INDENT}return {outs}")]
        values += ["", ""]
    lines.append(("return ", names[final]))
    values.append("")
    return lines, values


def _expression(m: _Member, args: list[str]) -> str | _Group:
    if m.node is not None and m.module is None:  # a merge
        if m.node.op == "concat":
            return _Group("torch.cat(", [_Group("[", list(args), "]"), "1"], ")")
        return (" + " if m.node.op == "add" else " * ").join(args)
    call = f"self.{m.attr}" if _identifier(m.attr) else f'getattr(self, "{m.attr}")'
    return f"{call}({', '.join(args)})"


# ---- emission --------------------------------------------------------------------------


def emit_python(network: Graph | nn.Module) -> str:
    """Standalone PyTorch source for a checked graph (or a module archdsl built).

    The file defines the network's class (``archdsl.check("network tiny ...")`` gives
    ``class Tiny``) and the block classes it uses, imports nothing but torch, and is
    formatted as ``ruff format`` leaves it.
    """
    graph = getattr(network, "archdsl_graph", network)
    if not isinstance(graph, Graph):
        raise TypeError("emit_python takes a checked graph or a module built by archdsl")
    return _Writer(_Analysis(graph)).write()


class _Writer:
    def __init__(self, analysis: _Analysis) -> None:
        self.a = analysis
        self.graph = analysis.graph
        helpers: list[type] = []
        for module in analysis.modules.values():
            helper = leaf_spec(module).helper
            if helper is not None and helper not in helpers:
                helpers.append(helper)
        self.helpers = sorted(helpers, key=lambda c: c.__name__)
        taken = {c.__name__ for c in self.helpers} | {"Module", "Tensor"}
        root = analysis.class_of[_ROOT]
        taken.add(root.name)
        _name_variants([c for c in analysis.classes if c is not root])
        for cls in analysis.classes:
            if cls is root:
                continue
            base, k = cls.name, 1
            while cls.name in taken:
                k += 1
                cls.name = f"{base}{k}"
            taken.add(cls.name)

    def write(self) -> str:
        root = self.a.class_of[_ROOT]
        span = self.graph.span
        where = f" from {Path(span.path).name}" if span is not None and span.line > 0 else ""
        shape = _shape_text(self.graph.input_shape)
        parts = [
            f'"""The network ``{self.graph.name}`` as plain PyTorch: written by archdsl{where}.\n\n'
            f"Needs torch alone. The state_dict keys and shapes are those of the module archdsl\n"
            f"builds, so weights load with ``load_state_dict(strict=True)``. Input: {shape}.\n"
            '"""',
            "import torch\n"
            + ("import torch.nn.functional as F\n" if self._needs_f() else "")
            + "from torch import nn",
            f'__all__ = ["{root.name}"]',
        ]
        blocks = [textwrap.dedent(inspect.getsource(h)).rstrip() for h in self.helpers]
        blocks += [self._class(cls) for cls in self.a.classes if cls is not root]
        blocks.append(self._class(root))
        return "\n\n".join(parts) + "\n\n\n" + "\n\n\n".join(blocks) + "\n"

    def _needs_f(self) -> bool:
        return any("F." in inspect.getsource(h) for h in self.helpers)

    # -- one class --------------------------------------------------------------------
    def _class(self, cls: _Class) -> str:
        lines = [f"class {cls.name}(nn.Module):", f'{INDENT}"""{self._doc(cls)}"""', ""]
        params = [
            _Group(
                "def __init__(",
                ["self", *(f"{p.name}{_annotation(p.values)}" for p in cls.params)],
                ") -> None:",
            )
        ]
        lines += layout_lines(params[0], INDENT)
        body = INDENT * 2
        lines.append(f"{body}super().__init__()")
        for m in cls.members:
            if not m.attr or m.shared:
                continue
            expr = self._ctor(cls, m, m.attr)
            if _identifier(m.attr):
                lines += layout_lines(expr, body, f"self.{m.attr} = ")
            else:
                lines += layout_lines(_Group(f'self.add_module("{m.attr}", ', [expr], ")"), body)
        lines.append("")
        returns = "torch.Tensor"
        if cls.scope_kind == "root" and self.graph.side_outputs:
            returns = "torch.Tensor | tuple[torch.Tensor, ...]"
        lines.append(f"{INDENT}def forward(self, x: torch.Tensor) -> {returns}:")
        for k, (prefix, expr) in enumerate(cls.lines):
            shapes = {repr(s[k]) for s in cls.shapes}
            comment = ""
            if len(shapes) == 1 and cls.shapes[0][k] is not None:
                comment = f"  # {_shape_text(cls.shapes[0][k])}"
            out = layout_lines(expr, body, prefix)
            if len(out) == 1 and len(out[0] + comment) <= LINE_LENGTH:
                lines.append(out[0] + comment)
            else:
                if comment:
                    lines.append(f"{body}#{comment[3:]}")
                lines += out
        return "\n".join(lines)

    def _doc(self, cls: _Class) -> str:
        span = cls.span
        where = (
            f" ({Path(span.path).name}, line {span.line})"
            if span is not None and span.line > 0
            else ""
        )
        if cls.scope_kind == "root":
            return f"The network ``{cls.block}``{where}."
        if cls.scope_kind == "block":
            return f"The block ``{cls.block}``{where}."
        return f"The {cls.scope_kind} ``{cls.instances[0].rsplit('.', 1)[-1]}``{where}."

    def _ctor(self, cls: _Class, m: _Member, where: str) -> str | _Group:
        """The constructor call for member ``m`` of ``cls`` (as its first instance has it),
        with the class's parameters in the places they fill."""
        if m.module is not None:
            spec = leaf_spec(m.module)
            values = spec.values(m.module)
            args: list[str | _Group] = []
            for arg, value, default in values:
                param = cls.slots.get((where, arg))
                if param is not None:
                    text = param.name
                elif _is_default(arg, value, default, values):
                    continue
                else:
                    text = literal(value)
                args.append(text if arg in spec.positional else f"{arg}={text}")
            return _Group(f"{spec.func}(", args, ")")
        assert m.scope is not None
        if self.a.inline[m.scope.path]:
            children = [
                self._ctor(cls, c, f"{where}.{c.attr}") for c in self.a.members[m.scope.path]
            ]
            return _Group("nn.Sequential(", children, ")")
        child = self.a.class_of[m.scope.path]
        values = self.a.param_values[m.scope.path]
        args = []
        positional = True
        for p in child.params:
            param = cls.slots.get((where, p.name))
            text = param.name if param is not None else literal(values[p.name])
            positional = positional and p.kind == "channels"
            args.append(text if positional else f"{p.name}={text}")
        return _Group(f"{child.name}(", args, ")")


def _name_variants(classes: list[_Class]) -> None:
    """Classes of one block with different structures: the one with the fewest members
    keeps the block's name, the others add the members it lacks (``BasicDownsample``)."""
    by_name: dict[str, list[_Class]] = {}
    for cls in classes:
        by_name.setdefault(cls.name, []).append(cls)
    for variants in by_name.values():
        if len(variants) < 2:
            continue
        attrs = {
            id(c): [m.attr for m in c.members if m.attr and _identifier(m.attr)] for c in variants
        }
        plain = min(variants, key=lambda c: len(attrs[id(c)]))
        for cls in variants:
            extra = [a for a in attrs[id(cls)] if a not in attrs[id(plain)]]
            if cls is not plain and extra:
                cls.name += "".join(camel(a) for a in extra[:2])


def _shape_text(shape: Sequence[int]) -> str:
    return " x ".join(["N", *(str(d) for d in shape)])


def _annotation(values: tuple[Any, ...]) -> str:
    types = {type(v) for v in values}
    if len(types) != 1:
        return ""
    t = types.pop()
    if t in (int, float, bool, str):
        return f": {t.__name__}"
    if t is tuple and all(isinstance(x, int) for v in values for x in v):
        return ": tuple[int, ...]"
    return ""
