"""Graph IR -> standalone PyTorch source: the ``.py`` output of ``archdsl compile``.

The emitted file imports torch alone (plus, for an op registered from Python, that op's
importable build function: see ``docs/extending.md``) and reads like a hand-written model:
one ``nn.Module`` class per distinct block structure, with a parametrised ``__init__`` and
a straight-line ``forward`` annotated with shapes (``# N x 64 x 56 x 56``, as
torchvision's GoogLeNet), and one class for the network, named after it in CamelCase. Its
state_dict has exactly the keys and shapes of the module :func:`archdsl.build` makes, so
weights move between the two with ``load_state_dict(strict=True)``.

The work is split by concern:

* :mod:`~archdsl.backends.python_analysis`: which scopes become classes, which are inline
  ``nn.Sequential``s, and which constructor arguments become class parameters
  (:mod:`~archdsl.backends.python_plan` holds what it finds);
* :mod:`~archdsl.backends.python_exprs`: arguments written as the spec's arithmetic
  (``padding=(kernel - 1) // 2``) rather than as parameters;
* :mod:`~archdsl.backends.python_names`: class names for a block's structural variants;
* :mod:`~archdsl.backends.python_forward`: the straight-line ``forward`` of a class;
* :mod:`~archdsl.backends.python_leaves`: one leaf module as a constructor call, and the
  source (or, for an op registered from Python, the import) the file carries for it;
* :mod:`~archdsl.backends.python_layout`: literals and line splitting as ``ruff format``;
* this module: the file itself, class by class (``emit_python``).

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

import textwrap
from pathlib import Path
from typing import Any

from torch import nn

from archdsl.backends.python_analysis import ROOT, Analysis, ClassParam, ClassPlan, Member
from archdsl.backends.python_forward import access, identifier
from archdsl.backends.python_layout import (
    INDENT,
    LINE_LENGTH,
    Group,
    layout_lines,
    literal,
    literal_expr,
    shape_text,
)
from archdsl.backends.python_leaves import NO_DEFAULT, Leaf, Support, is_default
from archdsl.backends.python_names import name_variants
from archdsl.backends.torch_backend import camel
from archdsl.ir import Graph

__all__ = ["LINE_LENGTH", "Group", "camel", "emit_python", "layout_lines", "literal"]


def emit_python(network: Graph | nn.Module) -> str:
    """Standalone PyTorch source for a checked graph (or a module archdsl built).

    The file defines the network's class (``archdsl.check("network tiny ...")`` gives
    ``class Tiny``) and the block classes it uses, imports nothing but torch (and the build
    functions of ops registered from Python), and is formatted as ``ruff format`` leaves
    it. A registered op whose build function cannot be imported is an ArchTypeError.
    """
    graph = getattr(network, "archdsl_graph", network)
    if not isinstance(graph, Graph):
        raise TypeError("emit_python takes a checked graph or a module built by archdsl")
    analysis = Analysis(graph)
    if isinstance(network, nn.Module):
        _check_unchanged(network, analysis)
    return _Writer(analysis).write()


def _check_unchanged(module: nn.Module, analysis: Analysis) -> None:
    """Refuse a module whose weights are no longer those of its network (batch norms folded
    by optimize_for_inference, a head replaced for fine-tuning): the source would describe
    the network, and its state_dict would not take the module's."""
    want = {
        f"{analysis.graph.node(nid).path}.{k}": tuple(v.shape)
        for nid, m in analysis.modules.items()
        for k, v in m.state_dict().items()
    }
    for nid, parameter in analysis.parameters.items():
        want[str(analysis.graph.node(nid).path)] = tuple(parameter.shape)
    have = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if have == want:
        return
    extra = sorted(set(have) - set(want))
    missing = sorted(set(want) - set(have))
    resized = sorted(k for k in set(have) & set(want) if have[k] != want[k])
    what = "; ".join(
        f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("new", extra), ("other shape", resized))
        if keys
    )
    raise ValueError(
        f"the module's weights are no longer those of the network {analysis.graph.name} "
        f"({what}): the .py output writes the network as its spec defines it. Write it from "
        "the module archdsl built (before optimize_for_inference or replacing layers), or "
        "save this module as .pt2 or .onnx"
    )


class _Writer:
    def __init__(self, analysis: Analysis) -> None:
        self.a = analysis
        self.graph = analysis.graph
        supports: dict[str, Support] = {}
        for leaf in analysis.leaves.values():
            if leaf.support is not None:
                supports.setdefault(leaf.support.key, leaf.support)
        # the definitions the file carries (helper classes), then its few imports
        self.carried = sorted((s for s in supports.values() if s.source), key=lambda s: s.key)
        taken = {n for s in self.carried for n in s.names} | {"Module", "Tensor", "F"}
        self.local: dict[tuple[str, str], str] = {}  # (module, name) -> the file's name
        self.imports: list[str] = []
        for s in sorted((s for s in supports.values() if s.module), key=lambda s: s.key):
            name = s.names[0]
            if (s.module, name) in self.local:
                continue
            local, k = name, 1
            while local in taken:
                k += 1
                local = f"{name}_{k}"
            taken.add(local)
            self.local[(s.module, name)] = local
            alias = f" as {local}" if local != name else ""
            self.imports.append(f"from {s.module} import {name}{alias}")
        root = analysis.class_of[ROOT]
        taken.add(root.name)
        name_variants(analysis, [c for c in analysis.classes if c is not root])
        for cls in analysis.classes:
            if cls is root:
                continue
            base, k = cls.name, 1
            while cls.name in taken:  # "Block2"; after a number, "DenseBlock12_2"
                k += 1
                cls.name = f"{base}_{k}" if base[-1].isdigit() else f"{base}{k}"
            taken.add(cls.name)

    def write(self) -> str:
        root = self.a.class_of[ROOT]
        span = self.graph.span
        where = f" from {Path(span.path).name}" if span is not None and span.line > 0 else ""
        shape = shape_text(self.graph.input_shape)
        needs = "torch alone"
        if self.imports:
            modules = sorted({line.split()[1] for line in self.imports})
            needs = f"torch and {', '.join(modules)} (for ops registered from Python)"
        doc = (
            f"Needs {needs}. The state_dict keys and shapes are those of the module archdsl "
            f"builds, so weights load with ``load_state_dict(strict=True)``. Input: {shape}."
        )
        summary = (
            f'"""The network ``{self.graph.name}`` as plain PyTorch: written by archdsl{where}.'
        )
        if len(summary) > LINE_LENGTH:  # a long name: the file goes to the paragraph
            summary = f'"""The network ``{self.graph.name}`` as plain PyTorch, written by archdsl.'
            doc = f"From {Path(span.path).name}. {doc}" if where and span is not None else doc
        parts = [
            summary + "\n\n" + "\n".join(textwrap.wrap(doc, 88)) + '\n"""',
            "\n".join(
                [
                    "import torch",
                    *(["import torch.nn.functional as F"] if self._needs_f() else []),
                    "from torch import nn",
                    # the user's own modules, in a block of their own (as isort places them)
                    *([""] + sorted(self.imports) if self.imports else []),
                ]
            ),
            f'__all__ = ["{root.name}"]',
        ]
        blocks = [s.source for s in self.carried]
        blocks += [self._class(cls) for cls in self.a.classes if cls is not root]
        blocks.append(self._class(root))
        return "\n\n".join(parts) + "\n\n\n" + "\n\n\n".join(blocks) + "\n"

    def _needs_f(self) -> bool:
        return any("F." in s.source for s in self.carried) or any(
            n.op == "resize" for n in self.a.graph.nodes()
        )

    # -- one class --------------------------------------------------------------------
    def _class(self, cls: ClassPlan) -> str:
        lines = [f"class {cls.name}(nn.Module):", *_docstring(self._doc(cls)), ""]
        params = [
            Group(
                "def __init__(",
                ["self", *(_parameter(p) for p in cls.params)],
                ") -> None:",
            )
        ]
        lines += layout_lines(params[0], INDENT)
        body = INDENT * 2
        lines.append(f"{body}super().__init__()")
        containers: set[str] = set()  # an opened scope's (backbone.layer3 read outside it)
        for m in cls.members:
            if not m.attr or m.shared:
                continue
            expr = self._ctor(cls, m, m.attr)
            owner, _, name = m.attr.rpartition(".")
            parts = owner.split(".") if owner else []
            for end in range(1, len(parts) + 1):
                container = ".".join(parts[:end])
                if container not in containers:
                    containers.add(container)
                    lines += self._register(access(".".join(parts[: end - 1])), parts[end - 1])
            lines += self._register(access(owner), name, expr, m.module is None and m.scope is None)
        lines.append("")
        returns = "torch.Tensor"
        if cls.scope_kind == "root" and self.graph.side_outputs:
            returns = "torch.Tensor | tuple[torch.Tensor, ...]"
        elif cls.scope_kind == "root" and self.graph.returns_fields:
            returns = "tuple[torch.Tensor, ...]"
        lines.append(f"{INDENT}def forward(self, x: torch.Tensor) -> {returns}:")
        for k, (prefix, expr) in enumerate(cls.lines):
            shapes = {repr(s[k]) for s in cls.shapes}
            comment = ""
            if len(shapes) == 1 and cls.shapes[0][k] is not None:
                comment = f"  # {shape_text(cls.shapes[0][k])}"
            out = layout_lines(expr, body, prefix)
            if len(out) == 1 and len(out[0] + comment) <= LINE_LENGTH:
                lines.append(out[0] + comment)
            else:
                if comment:
                    lines.append(f"{body}#{comment[3:]}")
                lines += out
        return "\n".join(lines)

    def _register(
        self, owner: str, name: str, expr: str | Group = "nn.Module()", parameter: bool = False
    ) -> list[str]:
        """The lines that make ``expr`` the member ``name`` of ``owner`` (``self``, or a
        container of an opened scope); ``parameter``: a layer scale's factors."""
        body = INDENT * 2
        if identifier(name):
            return layout_lines(expr, body, f"{owner}.{name} = ")
        register = ".register_parameter(" if parameter else ".add_module("
        return layout_lines(Group(owner + register, [literal(name), expr], ")"), body)

    def _doc(self, cls: ClassPlan) -> str:
        span = cls.span
        where = (
            f" ({Path(span.path).name}, line {span.line})"
            if span is not None and span.line > 0
            else ""
        )
        if cls.scope_kind == "root":
            return f"The network ``{cls.block}``{where}."
        if cls.scope_kind == "block":
            made = f" with {cls.variant}" if cls.variant else ""
            return f"The block ``{cls.block}``{where}{made}."
        return f"The {cls.scope_kind} ``{cls.instances[0].rsplit('.', 1)[-1]}``{where}."

    def _ctor(self, cls: ClassPlan, m: Member, where: str) -> str | Group:
        """The constructor call for member ``m`` of ``cls`` (as its first instance has it),
        with the class's parameters in the places they fill."""
        if m.leaf is not None:
            leaf = m.leaf
            args: list[str | Group] = []
            for arg, value, default in leaf.args:
                param = cls.slots.get((where, arg))
                derived = cls.derived.get((where, arg))
                if derived is not None:
                    text = derived.text()
                    args.append(text if arg in leaf.positional else f"{arg}={text}")
                elif arg in leaf.positional:
                    args.append(param.name if param is not None else literal_expr(value))
                elif param is not None:
                    args.append(f"{arg}={param.name}")
                elif not is_default(arg, value, default, leaf.args):
                    args.append(f"{arg}={literal(value)}")
            return Group(f"{self._func(leaf)}(", args, ")")
        assert m.scope is not None
        if self.a.inline[m.scope.path]:
            children = [
                self._ctor(cls, c, f"{where}.{c.attr}") for c in self.a.members[m.scope.path]
            ]
            return Group("nn.Sequential(", children, ")")
        child = self.a.class_of[m.scope.path]
        values = self.a.param_values[m.scope.path]
        args = []
        positional = True
        for p in child.params:
            param = cls.slots.get((where, p.name))
            derived = cls.derived.get((where, p.name))
            value = values[p.name]
            if param is derived is None and value == p.default and type(value) is type(p.default):
                continue  # only parameters with a default, all passed by name
            if derived is not None:
                text = derived.text()
            elif param is not None:
                text = param.name
            else:
                text = literal(value)
            positional = positional and p.kind == "channels"
            args.append(text if positional else f"{p.name}={text}")
        return Group(f"{child.name}(", args, ")")

    def _func(self, leaf: Leaf) -> str:
        """The name the file calls ``leaf`` by: an imported factory may carry an alias."""
        support = leaf.support
        if support is None or not support.module:
            return leaf.func
        name = support.names[0]
        return self.local[(support.module, name)] + leaf.func[len(name) :]


def _docstring(text: str) -> list[str]:
    """A class's docstring: one line, or where that is too long, wrapped (over two lines at
    least, as ruff's format keeps it) with the closing quotes on a line of their own."""
    one = f'{INDENT}"""{text}"""'
    if len(one) <= LINE_LENGTH:
        return [one]
    kept = text.replace(" = ", "\xa0=\xa0")  # never between a name and its value
    wrapped = textwrap.wrap(kept, LINE_LENGTH - len(INDENT) - 3, initial_indent='"""')
    return [INDENT + line.replace("\xa0", " ") for line in wrapped] + [f'{INDENT}"""']


def _parameter(p: ClassParam) -> str:
    """``name: type`` or ``name: type = default`` in a class's signature."""
    text = f"{p.name}{_annotation(p.values)}"
    if p.default is NO_DEFAULT:
        return text
    return f"{text} = {literal(p.default)}" if ":" in text else f"{text}={literal(p.default)}"


def _annotation(values: tuple[Any, ...]) -> str:
    types = {type(v) for v in values}
    if types == {int, tuple} and all(
        isinstance(x, int) for v in values if type(v) is tuple for x in v
    ):
        return ": int | tuple[int, ...]"  # a kernel size: k or (kh, kw)
    if len(types) != 1:
        return ""
    t = types.pop()
    if t in (int, float, bool, str):
        return f": {t.__name__}"
    if t is tuple and all(isinstance(x, int) for v in values for x in v):
        return ": tuple[int, ...]"
    if t is dict:  # a registered op's attributes
        return ": dict"
    return ""
