"""Weight transfer between specs: which tensors carry over, and copying them.

Module paths come from labels, not positions (docs/language.md, "the naming rule"), so
editing a spec keeps the keys of everything the edit did not touch: inserting a labelled
layer adds its tensors and moves no others. :func:`diff` says what an edit does to a
checkpoint; :func:`transfer` copies every tensor whose key and shape match.

>>> import archdsl
>>> report = diff("resnet18", archdsl.load_graph("resnet18", num_classes=10))
>>> report.reshaped
[('fc.weight', (1000, 512), (10, 512)), ('fc.bias', (1000,), (10,))]
>>> len(report.unchanged), report.new, report.dropped
(120, [], [])
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

Shape = tuple[int, ...]
Side = Any  # a Graph, spec file/name/text, torch module or state_dict


@dataclass(frozen=True)
class TransferReport:
    """What moves from a source network's tensors to a destination's, by state_dict key.

    ``unchanged``: same key and shape (copied by :func:`transfer`); ``reshaped``:
    ``(key, source shape, destination shape)``; ``new``: only in the destination (keep
    their initialization); ``dropped``: only in the source. Keys in destination order,
    ``dropped`` in source order.
    """

    unchanged: list[str] = field(default_factory=list)
    reshaped: list[tuple[str, Shape, Shape]] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every destination tensor comes from the source."""
        return not self.reshaped and not self.new

    def to_dict(self) -> dict[str, Any]:
        return {
            "unchanged": list(self.unchanged),
            "reshaped": [{"key": k, "from": list(a), "to": list(b)} for k, a, b in self.reshaped],
            "new": list(self.new),
            "dropped": list(self.dropped),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self, verbose: bool = False) -> str:
        """A text report: counts, then every changed key (and the unchanged with
        ``verbose``)."""
        lines = [
            f"unchanged: {len(self.unchanged)}  reshaped: {len(self.reshaped)}  "
            f"new: {len(self.new)}  dropped: {len(self.dropped)}"
        ]
        if verbose:
            lines += [f"  = {k}" for k in self.unchanged]
        lines += [f"  ~ {k}: {list(a)} -> {list(b)}" for k, a, b in self.reshaped]
        lines += [f"  + {k}" for k in self.new]
        lines += [f"  - {k}" for k in self.dropped]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def compare(src: Mapping[str, Shape], dst: Mapping[str, Shape]) -> TransferReport:
    """The report for two ``{key: shape}`` tables."""
    report = TransferReport()
    for key, shape in dst.items():
        if key not in src:
            report.new.append(key)
        elif tuple(src[key]) == tuple(shape):
            report.unchanged.append(key)
        else:
            report.reshaped.append((key, tuple(src[key]), tuple(shape)))
    report.dropped.extend(k for k in src if k not in dst)
    return report


def tensor_shapes(
    side: Side, *, network: str | None = None, params: Mapping[str, Any] | None = None
) -> dict[str, Shape]:
    """``{state_dict key: shape}`` of a network given as a module, a state_dict, a checked
    graph, a spec file, a bundled spec's name or spec text. Specs are built on torch's
    ``meta`` device, which allocates nothing."""
    if isinstance(side, Mapping):
        return {k: tuple(v.shape) for k, v in side.items()}
    if hasattr(side, "state_dict"):
        return {k: tuple(v.shape) for k, v in side.state_dict().items()}
    from archdsl.analysis.summary import as_graph

    side = as_graph(side, network, params)  # a graph stays as it is, and takes no parameters
    from archdsl.api import build

    module = build(side, device="meta")
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def diff(a: Side, b: Side) -> TransferReport:
    """What loading ``a``'s weights into ``b`` keeps, reshapes, adds and drops.

    Each side is a torch module, a state_dict, a checked graph, a spec file, a bundled
    spec's name (``"resnet50"``) or spec text.
    """
    return compare(tensor_shapes(a), tensor_shapes(b))


def transfer(src: nn.Module | Mapping[str, Tensor], dst: nn.Module) -> TransferReport:
    """Copy into ``dst`` every tensor of ``src`` (a module or a state_dict) with the same
    key and shape; leave the rest of ``dst`` as it is. Returns the report of what was
    copied (``unchanged``) and what was not."""
    import torch

    source = src if isinstance(src, Mapping) else src.state_dict()
    target = dst.state_dict()
    report = compare(tensor_shapes(source), tensor_shapes(target))
    with torch.no_grad():
        for key in report.unchanged:
            target[key].copy_(source[key])
    return report
