"""``summary``: a network's table of layers and blocks, and its totals, from the spec alone.

No forward pass and no torch: everything comes from the checked graph.

Conventions (see ``docs/analysis.md``):

- **MACs** are multiply-accumulates of convolutions and linear layers, one per weight per
  output position, per sample; bias adds, normalization, activations, pooling and merges
  count nothing. This is the convention of torchvision's published numbers (ResNet-50:
  4.09 GMACs) and of torch's ``FlopCounterMode`` divided by two.
- **FLOPs** are ``2 x MACs`` (a multiply and an add), as ``FlopCounterMode`` counts them.
- MACs and FLOPs totals are for an eval-mode forward pass: training-only side outputs
  (auxiliary classifiers) show their MACs in their own rows but are left out of the total;
  their parameters are counted, as ``model.parameters()`` counts them.
- Every parameter is trainable (``non_trainable_params`` is 0); non-trainable state
  (batch-norm running statistics) is counted as ``buffers``.
- Receptive field and effective stride: see :mod:`archdsl.analysis.receptive_field`.
- Memory: see :mod:`archdsl.analysis.memory`.

Rows: one per op node and one per scope (block instance, ``seq``, labelled group), in
execution order, a scope before its contents; ``depth`` 1 for the network's direct
contents. A scope row sums the params and MACs of everything inside it and reports the
shape, receptive field and stride of its output. Consecutive identical scopes (same block,
same structure and shapes) collapse into one row with ``repeat`` N, whose params and MACs
are totals over the N and whose shape and receptive field are those of the last one; its
contents are not listed (``expand=True`` lists every instance).

>>> s = summary("network n { input [3, 32, 32]; c: conv(8, 3, bias=false) -> relu }")
>>> s.params, s.macs, s.flops, s.output_shape
(216, 194400, 388800, (8, 30, 30))
>>> [(layer.name, layer.receptive_field) for layer in s.layers]
[('c', 3), ('1', 3)]
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from archdsl.analysis.blocks import Item, block_tree, collapse, span_name
from archdsl.analysis.memory import (
    dtype_bytes,
    peak_activation_elements,
    saved_activation_elements,
)
from archdsl.analysis.receptive_field import receptive_fields
from archdsl.ir.graph import Graph, Shape

FORMATS = ("text", "markdown", "json", "csv")
"""The formats :meth:`Summary.render` takes."""

OUTPUT_FIELDS = (
    "name",
    "channels",
    "output_shape",
    "stride",
    "effective_stride",
    "note",
)
"""The columns of :meth:`Summary.to_csv` when the summary has outputs."""

LAYER_FIELDS = (
    "name",
    "op",
    "kind",
    "depth",
    "repeat",
    "output_shape",
    "params",
    "buffers",
    "macs",
    "receptive_field",
    "stride",
    "last",
)


@dataclass(frozen=True)
class Layer:
    """One row. ``name`` is the module path (of the first instance when ``repeat > 1``;
    ``last`` names the last); ``kind`` is ``op``, ``block``, ``seq`` or ``group``;
    ``receptive_field`` and ``stride`` are ints, ``[h, w]`` when the axes differ,
    ``"global"`` and ``None`` for a node that sees the whole input, ``None`` for a network
    with flat input."""

    name: str
    op: str
    kind: str
    depth: int
    repeat: int
    output_shape: Shape
    params: int
    buffers: int
    macs: int
    receptive_field: Any
    stride: Any
    last: str

    @property
    def display_name(self) -> str:
        """``layer3.1-5`` for a collapsed row, else the name."""
        return span_name(self.name, self.last)

    @property
    def display_op(self) -> str:
        """``bottleneck x 5`` for a collapsed row, else the op or block name."""
        return f"{self.op} x {self.repeat}" if self.repeat > 1 else self.op

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


@dataclass(frozen=True)
class Output:
    """A requested output (a backbone's feature map, ``summary(..., outputs=[...])``):
    ``name`` (module path), per-sample ``output_shape``, ``stride`` = input size / output
    size from the shapes (an int; ``[h, w]`` when the axes differ; rounded to three decimals
    where the sizes do not divide; None for flat features), ``effective_stride`` (the
    receptive-field analysis' distance between neighbouring output positions, in input
    pixels) and a ``note`` saying when the axes differ or the sizes do not divide."""

    name: str
    output_shape: Shape
    stride: Any
    effective_stride: Any
    note: str = ""

    @property
    def channels(self) -> int:
        return self.output_shape[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        d["channels"] = self.channels
        return d


@dataclass(frozen=True)
class Summary:
    """A network's totals and rows; ``to_dict`` gives JSON-able data, ``render`` text."""

    name: str
    input_shape: Shape
    output_shape: Shape
    params: int
    buffers: int
    macs: int
    batch: int
    dtype: str
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int
    saved_activation_bytes: int
    training_bytes: int
    layers: tuple[Layer, ...]
    side_outputs: tuple[str, ...] = ()
    # what training mode returns, in order: (field name, output) with output "out" for the
    # main output or a side output's label
    training_outputs: tuple[tuple[str, str], ...] = ()
    depth: int | None = None
    expand: bool = False
    outputs: tuple[Output, ...] = ()

    @property
    def flops(self) -> int:
        """Floating-point operations: 2 x MACs."""
        return 2 * self.macs

    @property
    def trainable_params(self) -> int:
        return self.params

    @property
    def non_trainable_params(self) -> int:
        return 0

    def layer(self, name: str) -> Layer:
        """The row named ``name``; KeyError when the depth or collapsing hides it."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "flops": self.flops,
            "batch": self.batch,
            "dtype": self.dtype,
            "param_bytes": self.param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "activation_bytes": self.activation_bytes,
            "saved_activation_bytes": self.saved_activation_bytes,
            "training_bytes": self.training_bytes,
            "side_outputs": list(self.side_outputs),
            "training_outputs": [list(field) for field in self.training_outputs],
            "depth": self.depth,
            "expand": self.expand,
            "layers": [row.to_dict() for row in self.layers],
            "outputs": [out.to_dict() for out in self.outputs],
        }

    # ---- renderers ---------------------------------------------------------------
    def render(self, fmt: str = "text") -> str:
        """The summary in one of :data:`FORMATS`; ValueError for any other."""
        renderers = {
            "text": self.to_text,
            "markdown": self.to_markdown,
            "json": self.to_json,
            "csv": self.to_csv,
        }
        if fmt not in renderers:
            raise ValueError(f"unknown summary format {fmt!r}; one of: {', '.join(FORMATS)}")
        return renderers[fmt]()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        """The rows only, one per line, columns as :data:`LAYER_FIELDS` (shapes and
        two-axis values written ``64x56x56``); with ``outputs``, the outputs instead,
        columns as :data:`OUTPUT_FIELDS` (a CSV file holds one table)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        fields, rows = (
            (OUTPUT_FIELDS, self.outputs) if self.outputs else (LAYER_FIELDS, self.layers)
        )
        writer.writerow(fields)
        for row in rows:
            d = row.to_dict()
            writer.writerow(_csv_value(d[k]) for k in fields)
        return buf.getvalue()

    def _outputs_table(self) -> tuple[list[str], list[list[str]]]:
        header = ["Output", "Channels", "Size", "Stride", "Note"]
        rows = []
        for out in self.outputs:
            note = out.note
            if out.effective_stride != out.stride and out.effective_stride is not None:
                note += f"{'; ' if note else ''}effective stride {_rf(out.effective_stride)}"
            size = "x".join(str(d) for d in out.output_shape[1:]) or "-"
            rows.append([out.name, f"{out.channels:,}", size, _rf(out.stride), note])
        if not any(r[-1] for r in rows):
            header.pop()
            rows = [r[:-1] for r in rows]
        return header, rows

    def _table(self, indent: bool) -> tuple[list[str], list[list[str]]]:
        header = ["Layer", "Op", "Output shape", "Params", "MACs", "RF", "Stride"]
        rows = []
        for row in self.layers:
            name = row.display_name
            if indent:
                name = "  " * (row.depth - 1) + name
            rows.append(
                [
                    name,
                    row.display_op,
                    _shape(row.output_shape),
                    f"{row.params:,}",
                    _si(row.macs) if row.macs else "-",
                    _rf(row.receptive_field),
                    _rf(row.stride),
                ]
            )
        return header, rows

    def _totals(self) -> list[tuple[str, str]]:
        at = f"batch {self.batch}, {self.dtype}"
        side: list[tuple[str, str]] = []
        if self.side_outputs:
            names = ", ".join(self.side_outputs)
            fields = ", ".join(
                f if f == source else f"{f}={source}" for f, source in self.training_outputs
            )
            side = [
                (
                    "Side outputs",
                    f"{names}: training only, counted in params, not in MACs; "
                    f"training mode returns ({fields})",
                )
            ]
        return [
            (
                "Network",
                f"{self.name}: input {_shape(self.input_shape)} -> output "
                f"{_shape(self.output_shape)}",
            ),
            (
                "Params",
                f"{self.params:,} ({_si(self.params)}): trainable {self.trainable_params:,}, "
                f"non-trainable {self.non_trainable_params:,}",
            ),
            ("Buffers", f"{self.buffers:,} (batch-norm running statistics)"),
            (
                "MACs",
                f"{self.macs:,} ({_si(self.macs, 'MACs')}): multiply-accumulates of conv and "
                "linear layers, per sample",
            ),
            ("FLOPs", f"{self.flops:,} ({_si(self.flops, 'FLOPs')}) = 2 x MACs, per sample"),
            *side,
            (
                "Param memory",
                f"{_bytes(self.param_bytes)} ({self.dtype}); buffers {_bytes(self.buffer_bytes)}",
            ),
            ("Activations", f"{_bytes(self.activation_bytes)} peak, inference forward ({at})"),
            (
                "Training",
                f"{_bytes(self.training_bytes)} estimated ({at}): weights, gradients, "
                f"buffers and {_bytes(self.saved_activation_bytes)} of saved "
                "activations; optimizer state not included",
            ),
        ]

    def to_text(self) -> str:
        header, rows = self._table(indent=True)
        right = {3, 4, 5, 6}
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                for i, c in enumerate(cells)
            ).rstrip()

        rule = "-" * len(line(["-" * w for w in widths]))
        out = [line(header), rule, *(line(r) for r in rows), rule]
        label = max(len(k) for k, _ in self._totals())
        out += [f"{k + ':':<{label + 1}} {v}" for k, v in self._totals()]
        if self.outputs:
            out += ["", "Outputs (stride = input size / output size):"]
            out += _aligned(*self._outputs_table(), right={1, 3})
        return "\n".join(out) + "\n"

    def to_markdown(self) -> str:
        header, rows = self._table(indent=False)

        def cell(text: str) -> str:
            return text.replace("|", "\\|")

        out = [f"## {self.name}", ""]
        out += [f"- **{k}**: {cell(v)}" for k, v in self._totals()]
        out += [
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", "---", "---", "---:", "---:", "---:", "---:"]) + "|",
        ]
        out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
        if self.outputs:
            header, rows = self._outputs_table()
            out += ["", "Outputs (stride = input size / output size):", ""]
            out += ["| " + " | ".join(header) + " |"]
            out += ["|" + "|".join(["---", "---:", "---", "---:", "---"][: len(header)]) + "|"]
            out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
        return "\n".join(out) + "\n"


def _aligned(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """A plain-text table, indented two spaces, the columns in ``right`` right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "  "
            + "  ".join(
                c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                for i, c in enumerate(cells)
            ).rstrip()
        )

    return [line(header), *(line(r) for r in rows)]


def _shape(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _rf(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return value


def _si(n: float, unit: str = "") -> str:
    """``4.09 GMACs``: three significant digits with a decimal prefix."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def _bytes(n: int) -> str:
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:,.2f} {unit}"
    return f"{n} B"


def _rows(
    items: list[Item], depth: int | None, expand: bool, rf: Mapping[str, Any], graph: Graph
) -> Iterable[Layer]:
    for item in items if expand else collapse(items):
        if depth is not None and item.depth > depth:
            continue
        field = rf[item.output]
        size, stride = field.report() if field is not None else (None, None)
        yield Layer(
            name=item.name,
            op=item.op,
            kind=item.kind,
            depth=item.depth,
            repeat=item.repeat,
            output_shape=graph.node(item.output).shape,
            params=item.cost.params,
            buffers=item.cost.buffers,
            macs=item.cost.macs,
            receptive_field=size,
            stride=stride,
            last=item.last.name,
        )
        if item.repeat == 1 and item.children:
            yield from _rows(item.children, depth, expand, rf, graph)


def as_graph(
    spec: Graph | str | os.PathLike[str], network: str | None, params: Mapping[str, Any] | None
) -> Graph:
    """A checked graph from a graph, a spec file, a bundled spec's name (``"resnet50"``),
    or spec text (a string holding ``{`` or a newline)."""
    if isinstance(spec, Graph):
        if network is not None or params:
            raise ValueError(
                "a checked graph is one network with its parameters set; "
                "network= and parameters apply to a spec"
            )
        return spec
    from archdsl import api

    params = dict(params or {})
    text = os.fspath(spec)
    if isinstance(spec, str) and ("{" in spec or "\n" in spec):
        return api.check(spec, network=network, **params)
    if (
        not os.path.exists(text)
        and isinstance(spec, str)
        and "/" not in text
        and not text.endswith(".arch")
        and text in api.list_specs()
    ):
        return api.check_file(api.spec_path(text), network=network, **params)
    return api.check_file(Path(text), network=network, **params)


def _training_outputs(graph: Graph) -> tuple[tuple[str, str], ...]:
    if not getattr(graph, "side_outputs", None):
        return ()
    label = {node_id: name for name, node_id in getattr(graph, "side_outputs", {}).items()}
    label[graph.output] = "out"
    return tuple(
        (field, label[node_id]) for field, node_id in getattr(graph, "output_fields", {}).items()
    )


def summary(
    spec: Graph | str | os.PathLike[str],
    depth: int | None = None,
    expand: bool = False,
    batch: int = 1,
    dtype: str = "float32",
    *,
    network: str | None = None,
    params: Mapping[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
    **kwargs: Any,
) -> Summary:
    """The summary of a network: a checked :class:`~archdsl.ir.Graph`, a spec file, the
    name of a bundled spec (``"resnet50"``) or spec text.

    ``depth`` limits the rows to that nesting level (1: the network's direct contents;
    None: all); ``expand`` lists repeated identical blocks one by one instead of as one
    ``name x N`` row; ``batch`` and ``dtype`` scale the memory figures. ``network`` and
    ``params`` pick a network of the file and override its parameters, as in
    :func:`archdsl.check_file`; other keywords are parameters too, as in
    :func:`archdsl.load` (``summary("resnet50", num_classes=10)``). ``outputs`` names
    feature maps by module path, as ``archdsl.load(..., outputs=)`` does (``["layer2",
    "layer3", "layer4"]``); each gets an :class:`Output` row with its channels, size and
    stride; the totals stay those of the whole network. A network whose ``outputs(...)``
    names the values it returns has those rows without asking. Spec errors, and an output that is not a module path (with a
    did-you-mean), raise :class:`~archdsl.ArchError`; a bad ``depth``, ``batch`` or
    ``dtype`` raises ValueError.
    """
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    itemsize = dtype_bytes(dtype)
    graph = as_graph(spec, network, {**(params or {}), **kwargs})
    root = block_tree(graph)
    rf = receptive_fields(graph)
    layers = tuple(_rows(root.children, depth, expand, rf, graph))
    if outputs is not None:
        from archdsl.backbone import output_nodes

        outs = _outputs(graph, output_nodes(graph, outputs), rf)
    else:  # the values the network returns, by its outputs(...) statement (if any)
        outs = _outputs(graph, graph.output_fields if graph.returns_fields else {}, rf)
    param_bytes = root.cost.params * itemsize
    buffer_bytes = root.cost.buffers * itemsize
    saved = saved_activation_elements(graph) * batch * itemsize
    return Summary(
        name=graph.name,
        input_shape=graph.input_shape,
        output_shape=graph.output_shape,
        params=root.cost.params,
        buffers=root.cost.buffers,
        macs=root.cost.macs,
        batch=batch,
        dtype=dtype,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        activation_bytes=peak_activation_elements(graph) * batch * itemsize,
        saved_activation_bytes=saved,
        training_bytes=2 * param_bytes + buffer_bytes + saved,
        layers=layers,
        side_outputs=tuple(getattr(graph, "side_outputs", {})),
        training_outputs=_training_outputs(graph),
        depth=depth,
        expand=expand,
        outputs=outs,
    )


def _outputs(graph: Graph, nodes: Mapping[str, str], rf: Mapping[str, Any]) -> tuple[Output, ...]:
    from archdsl.backbone import shape_stride

    result = []
    for name, node_id in nodes.items():
        shape = graph.node(node_id).shape
        stride, note = shape_stride(graph.input_shape, shape)
        field = rf[node_id]
        effective = field.report()[1] if field is not None else None
        result.append(Output(name, shape, stride, effective, note))
    return tuple(result)
