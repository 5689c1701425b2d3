"""The ``forward`` of an emitted class: straight-line code over its members.

Each statement calls one member (``x = self.conv1(x)``) or applies a merge (``out = out +
x``, ``torch.cat([...], 1)``). A value used once by the next module call overwrites its
variable, as hand-written code does (``x = self.relu(x)``); other values take the
member's attribute name, or ``out``. Identity members are aliases: the forward reads their
input directly. Training-only side outputs are computed under ``if self.training``.
"""

from __future__ import annotations

import builtins
import keyword
from typing import TYPE_CHECKING

from archdsl.backends.python_layout import INDENT, Group, flat
from archdsl.ops.upsample import INTERPOLATING

if TYPE_CHECKING:
    from archdsl.backends.python_analysis import Member
    from archdsl.ir import OpNode

TAKEN = frozenset({"x", "self", "torch", "nn", "F", "out"}) | frozenset(dir(builtins))
"""Names an attribute or variable of an emitted class never takes."""


def identifier(name: str) -> bool:
    """Whether ``name`` can be written as ``self.name``."""
    return name.isidentifier() and not keyword.iskeyword(name)


def access(attr: str, owner: str = "self") -> str:
    """How ``owner``'s member ``attr`` is read: ``self.conv1``, ``getattr(self, "1")``, and
    through the containers of an opened scope, ``getattr(self.backbone, "1")``."""
    for part in attr.split(".") if attr else ():
        owner = f"{owner}.{part}" if identifier(part) else f'getattr({owner}, "{part}")'
    return owner


def forward_body(
    members: list[Member],
    input_id: str,
    output_id: str,
    sides: dict[str, str],
    fields: dict[str, str] | None = None,
    swapped: frozenset[str] = frozenset(),
) -> tuple[list[tuple[str, str | Group]], list[str]]:
    """The forward body (without shape comments) and, per line, the value it computes.
    ``sides``: the side outputs (label -> node id), returned in training mode as the
    ``fields`` (name -> node id) in order; without side outputs, ``fields`` are the values
    returned in both modes, as a tuple. ``swapped``: the sums of two terms written second
    term first, as the compiled module computes them (``out += x``, see
    :func:`~archdsl.backends.torch_backend.in_place`): the same value, and the layout in
    memory of the term written first (a channels-last term's, say), so the next layer
    computes exactly what the compiled module's does."""
    alias: dict[str, str] = {}

    def resolve(v: str) -> str:
        while v in alias:
            v = alias[v]
        return v

    side_of = {node_id: name for name, node_id in sides.items()}
    stmts: list[Member] = []
    for m in members:
        if m.name and not m.attr:  # an identity alias
            alias[m.output] = resolve(m.inputs[0])
            continue
        stmts.append(m)
    inputs = [[resolve(v) for v in m.inputs] for m in stmts]
    for m, ins in zip(stmts, inputs):
        if m.node is not None and m.node.id in swapped:
            ins.reverse()
    users: dict[str, list[int]] = {}
    side_users: dict[str, list[int]] = {}
    for i, (m, ins) in enumerate(zip(stmts, inputs)):
        for v in ins:
            (side_users if m.output in side_of else users).setdefault(v, []).append(i)
    final = resolve(output_id)
    several = fields if fields and not sides else {}  # values returned in both modes
    returned = [resolve(node_id) for node_id in several.values()] if several else [final]
    for v in dict.fromkeys(returned):  # the return reads them
        users.setdefault(v, []).append(len(stmts))
    named_by: dict[str, str] = {}  # a returned value's variable takes its field's name
    for name, v in zip(several, returned if several else ()):
        named_by.setdefault(v, name)

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
        elif m.output in named_by and named_by[m.output] not in TAKEN:
            base = named_by[m.output]
        elif m.attr and identifier(m.attr) and m.attr not in TAKEN and not _continues(i):
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
    lines: list[tuple[str, str | Group]] = []
    values: list[str] = []
    for i, m in enumerate(stmts):
        args = [names[v] for v in inputs[i]]
        expr = expression(m, args)
        for v in inputs[i]:
            remaining[v] -= 1
            if remaining[v] == 0:
                live.pop(names[v], None)
        # a merge takes over only a generic name: never ``branch1 = torch.cat([branch1, ...])``
        generic = args[0] == "x" or args[0].startswith("out")
        takes_over = reuses(i) and (m.module is not None or generic) and m.output not in named_by
        target = args[0] if takes_over else fresh(i)
        names[m.output] = target
        live[target] = 1
        if m.output in side_of:
            expr = f"{flat(expr)} if self.training else None"
        lines.append((f"{target} = ", expr))
        values.append(m.output)
    if sides:
        default = {"out": output_id, **sides}
        fields = fields or default
        ret = f"{INDENT}return {', '.join(names[resolve(node_id)] for node_id in fields.values())}"
        if fields != default:  # an outputs(...) statement's fields, as the compiled module's
            ret += f"  # ({', '.join(fields)})"
        lines += [("", "if self.training:"), ("", ret)]
        values += ["", ""]
    if several:
        variables = [names[v] for v in returned]
        comment = f"  # ({', '.join(several)})" if variables != list(several) else ""
        lines.append(("return ", ", ".join(variables) + comment))
    else:
        lines.append(("return ", names[final]))
    values.append("")
    return lines, values


def expression(m: Member, args: list[str]) -> str | Group:
    """The right-hand side of member ``m``'s statement, reading the variables ``args``."""
    if m.leaf is not None and m.module is None:  # a parameter of the block: x * factors
        factors = access(m.attr)
        flat = any(arg == "flat" and value for arg, value, _ in m.leaf.args)
        return f"{args[0]} * {factors}{'.view(-1, 1, 1)' if flat else ''}"
    if m.node is not None and m.module is None:  # a merge, or a resize
        if m.node.op == "resize":
            return _resize(m.node, args)
        if m.node.op == "concat":
            return Group("torch.cat(", [Group("[", list(args), "]", collection=True), "1"], ")")
        return (" + " if m.node.op == "add" else " * ").join(args)
    return f"{access(m.attr)}({', '.join(args)})"


def _resize(node: OpNode, args: list[str]) -> Group:
    """``F.interpolate(x, size=...)``: the size written, or another value's (``other``'s
    ``.shape[-2:]``)."""
    attrs = node.attrs
    size = attrs["size"]
    words: list[str | Group] = [
        args[0],
        f"size={args[1]}.shape[-2:]" if len(args) > 1 else f"size={tuple(size)!r}",
    ]
    if attrs["mode"] != "nearest":
        words.append(f"mode={attrs['mode']!r}".replace("'", '"'))
    if attrs["mode"] in INTERPOLATING:
        words.append(f"align_corners={attrs['align_corners']}")
    return Group("F.interpolate(", words, ")")
