"""Load a state_dict file into a network, strictly, without initialising it first.

The network is built on the meta device (shapes, no memory, no random init); the file is
read with ``torch.load(weights_only=True, mmap=True)``; every key and shape is checked
against the network before anything is assigned; then ``load_state_dict(strict=True,
assign=True)`` makes the file's tensors the module's parameters and buffers. So loading
costs about what reading the file costs (with ``mmap`` the pages are read on first use).

Accepted files: a plain state_dict, as torchvision publishes its ``.pth`` weights and as
``archdsl compile -o model.pt`` writes it; or a checkpoint dict holding one under
``"state_dict"`` or ``"model"``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archdsl.errors import ArchTypeError, Span
from archdsl.ir import Graph

SHOWN = 5  # names listed per kind of mismatch
WRAPPER_KEYS = ("state_dict", "model")
# BatchNorm fills a missing num_batches_tracked itself (files saved before it existed)
OPTIONAL_SUFFIXES = (".num_batches_tracked",)


class WeightsError(ArchTypeError):
    """A weights file that does not fit the network: unreadable, or with missing,
    unexpected or wrong-shape tensors (listed in ``missing``, ``unexpected``,
    ``wrong_shape``)."""

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ):
        super().__init__(message, span)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.wrong_shape = wrong_shape or []


@dataclass(frozen=True)
class Mismatch:
    """How a state_dict differs from a network's: names, and (name, file, network) shapes."""

    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def counts(self) -> str:
        """``"3 missing, 1 unexpected, 2 wrong-shape tensors"``."""
        parts = [
            f"{len(names)} {what}"
            for what, names in (
                ("missing", self.missing),
                ("unexpected", self.unexpected),
                ("wrong-shape", self.wrong_shape),
            )
            if names
        ]
        total = len(self.missing) + len(self.unexpected) + len(self.wrong_shape)
        return ", ".join(parts) + f" {_tensors(total)}"

    def report(self) -> list[str]:
        """One line per kind of mismatch: the count and the first few names."""
        lines = []
        for what, names in (
            ("missing from the file", self.missing),
            ("unexpected (not in the network)", self.unexpected),
        ):
            if names:
                lines.append(f"{what}: {_first(names)}")
        if self.wrong_shape:
            shown = ", ".join(
                f"{k} (file {_shape(a)}, network {_shape(b)})"
                for k, a, b in self.wrong_shape[:SHOWN]
            )
            more = (
                f", ... ({len(self.wrong_shape) - SHOWN} more)"
                if len(self.wrong_shape) > SHOWN
                else ""
            )
            lines.append(f"wrong shape: {shown}{more}")
        return lines


def compare(expected: Mapping[str, Any], given: Mapping[str, Any]) -> Mismatch:
    """Compare a network's state_dict (``expected``, meta tensors are fine) with a file's."""
    missing = [k for k in expected if k not in given and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        (k, tuple(given[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in given and tuple(getattr(given[k], "shape", ())) != tuple(expected[k].shape)
    ]
    return Mismatch(missing, unexpected, wrong)


def read_state_dict(
    path: str | os.PathLike[str], span: Span | None = None
) -> dict[str, torch.Tensor]:
    """The state_dict in a file, on the CPU (``weights_only``: no code runs)."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # the legacy (pre-zip) format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {os.fspath(path)}: no such file", span) from None
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(
            f"weights file {os.fspath(path)}: cannot read it as a state_dict ({first})", span
        ) from None
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"weights file {os.fspath(path)}: not a state_dict (a mapping of names to tensors)",
            span,
        )
    return dict(obj)


def load_weights(
    module: nn.Module, path: str | os.PathLike[str], *, ignore: Collection[str] = ()
) -> nn.Module:
    """Load the state_dict in ``path`` into ``module`` strictly and return the module.

    ``module`` is best built on the meta device (``archdsl.build(graph, device="meta")``):
    the file's tensors then become its parameters and buffers, with no initialisation and
    no copy. Floating tensors keep the module's dtype. On any mismatch, a
    :class:`WeightsError` at the network's span lists what is missing, unexpected and of
    the wrong shape. Keys in ``ignore`` are dropped from the file first (a backbone ignores
    the layers it pruned).
    """
    graph: Graph | None = getattr(module, "archdsl_graph", None)
    span = graph.span if graph is not None else None
    name = graph.name if graph is not None else type(module).__name__
    state = read_state_dict(path, span)
    for key in ignore:
        state.pop(key, None)
    expected = module.state_dict()
    mismatch = compare(expected, state)
    if mismatch:
        e = WeightsError(
            f"weights file {os.fspath(path)} does not fit network '{name}' ({mismatch.counts()})",
            span,
            missing=mismatch.missing,
            unexpected=mismatch.unexpected,
            wrong_shape=mismatch.wrong_shape,
        )
        e.notes.extend(mismatch.report())
        if mismatch.unexpected and all(k.startswith("module.") for k in mismatch.unexpected):
            e.notes.append(
                "every unexpected key starts with 'module.': the file was saved "
                "from an nn.DataParallel wrapper; strip that prefix"
            )
        raise e
    for key, tensor in state.items():
        want = expected[key]
        if tensor.is_floating_point() and want.is_floating_point() and tensor.dtype != want.dtype:
            state[key] = tensor.to(want.dtype)
    module.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:  # non-persistent buffers are not in a state_dict; none of archdsl's modules has one
        module.to_empty(device="cpu")
        raise WeightsError(
            f"network '{name}': tensors not in any state_dict stayed uninitialised: {_first(left)}",
            span,
        )
    return module


def _tensors(n: int) -> str:
    return "tensor" if n == 1 else "tensors"


def _first(names: list[str]) -> str:
    more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
