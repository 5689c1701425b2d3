"""Load a state_dict file into a network, strictly, without initialising it first.

The network is built on the meta device (shapes, no memory, no random init); the file is
read with ``torch.load(weights_only=True, mmap=True)``; every key and shape is checked
against the network before anything is assigned; then ``load_state_dict(strict=True,
assign=True)`` makes the file's tensors the module's parameters and buffers. So loading
costs about what reading the file costs (with ``mmap`` the pages are read on first use).

Accepted files: a plain state_dict, as torchvision publishes its ``.pth`` weights and as
``archdsl compile -o model.pt`` writes it; a checkpoint dict holding one under
``"state_dict"`` or ``"model"``; or a safetensors file, as timm publishes its weights on the
Hugging Face hub (known by its content, not its name; read here, with no package needed).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
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


def _dropped(key: str, expected: Mapping[str, Any]) -> bool:
    """A batch norm's ``num_batches_tracked`` given to a frozen batch norm (statistics and
    no count), which drops it on loading, as torchvision's does."""
    prefix, _, leaf = key.rpartition(".")
    return leaf == "num_batches_tracked" and f"{prefix}.running_mean" in expected


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

    def report(self, given: str = "the file") -> list[str]:
        """One line per kind of mismatch: the count and the first few names (``given``
        names where the tensors come from)."""
        lines = []
        for what, names in (
            (f"missing from {given}", self.missing),
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
    unexpected = [k for k in given if k not in expected and not _dropped(k, expected)]
    wrong = [
        (k, tuple(given[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in given and tuple(getattr(given[k], "shape", ())) != tuple(expected[k].shape)
    ]
    return Mismatch(missing, unexpected, wrong)


def read_state_dict(
    path: str | os.PathLike[str], span: Span | None = None
) -> dict[str, torch.Tensor]:
    """The state_dict in a file, on the CPU: a file ``torch.save`` wrote, read with
    ``weights_only`` (no code runs), or a safetensors file."""
    where = f"weights file {os.fspath(path)}"
    try:
        if _is_safetensors(path):
            return _read_safetensors(path, span)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # the legacy (pre-zip) format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{where}: no such file", span) from None
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file makes torch.load raise KeyError, IndexError ...
        raise WeightsError(f"{where}: {_unreadable(path, e)}", span) from None
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


def _unreadable(path: str | os.PathLike[str], e: BaseException) -> str:
    """Why ``torch.load`` could not read a file, in the user's terms."""
    if isinstance(e, OSError):  # a folder, a file we may not read, ...
        return f"cannot read it ({e.strerror or type(e).__name__})"
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        head = b"PK"  # (gone since torch.load read it) say what torch said
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save's zip format, or a pickle
        return "not a file torch.save wrote, nor a safetensors file"
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
    if refused:
        return (
            f"it holds an object of class {refused.group(1)}, which archdsl does not unpickle (it reads "
            f"tensors and plain containers only, so that no code from the file runs); save "
            f"the state_dict alone: torch.save(model.state_dict(), path)"
        )
    first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"cannot read it as a state_dict ({first[0] if first else type(e).__name__})"


SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip


def write_safetensors(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write a state_dict as a safetensors file: each tensor contiguous, on the CPU, in
    the order given; ``{"format": "pt"}`` as the metadata, as torch's writers put it."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    codes = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
    for name, tensor in state.items():
        if tensor.dtype not in codes:
            raise ValueError(f"{name}: safetensors has no code for {tensor.dtype}")
        t = tensor.detach().to("cpu").contiguous()
        blob = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": codes[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _naturals(value: Any) -> bool:
    """Whether a JSON value is a list of non-negative integers."""
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def _is_safetensors(path: str | os.PathLike[str]) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian),
    then the header's ``{``."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") <= size - 8


def _read_safetensors(
    path: str | os.PathLike[str], span: Span | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file: a JSON header naming each tensor's dtype, shape
    and byte range, then the data (memory-mapped, and copied into each tensor)."""
    where = f"weights file {os.fspath(path)}"

    def bad(why: str) -> WeightsError:
        return WeightsError(f"{where}: not a valid safetensors file ({why})", span)

    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])  # an object: the file starts with "{"
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("its header is not JSON") from None
    except RecursionError:
        raise bad("its header is nested too deeply") from None
    start = 8 + size
    raw = (
        torch.frombuffer(data, dtype=torch.uint8)
        if len(data) > start
        else torch.empty(0, dtype=torch.uint8)
    )
    state: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise bad(f"tensor {name!r}: malformed entry")
        for key in ("dtype", "shape", "data_offsets"):
            if key not in entry:
                raise bad(f"tensor {name!r}: no {key!r}")
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise bad(f"tensor {name!r}: dtype {entry['dtype']!r} is not supported")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not (_naturals(shape) and _naturals(offsets) and len(offsets) == 2):
            raise bad(f"tensor {name!r}: malformed entry")
        begin, end = offsets
        if (
            not begin <= end <= len(data) - start
            or end - begin != math.prod(shape) * dtype.itemsize
        ):
            raise bad(
                f"tensor {name!r}: its bytes {begin}..{end} do not hold a {shape} {entry['dtype']} tensor"
            )
        # A copy: the format aligns data to 8 bytes only, and oneDNN's kernels round
        # differently on weights that are not 64-byte aligned (as a fresh tensor is), so
        # a network would compute other last bits than with the same weights from a .pth.
        state[name] = raw[start + begin : start + end].clone().view(dtype).reshape(shape)
    return state


def load_weights(
    module: nn.Module,
    path: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    ignore: Collection[str] = (),
) -> nn.Module:
    """Load the state_dict in ``path`` into ``module`` strictly and return the module.

    ``module`` is best built on the meta device (``archdsl.build(graph, device="meta")``):
    the file's tensors then become its parameters and buffers, with no initialisation and
    no copy. ``path`` may also be a state_dict itself (``torchvision_model.state_dict()``):
    its tensors are copied, so the two modules do not share weights. Floating tensors keep
    the module's dtype. On any mismatch, a :class:`WeightsError` at the network's span lists
    what is missing, unexpected and of the wrong shape. Keys in ``ignore`` are dropped from
    the file first (a backbone ignores the layers it pruned).
    """
    graph: Graph | None = getattr(module, "archdsl_graph", None)
    span = graph.span if graph is not None else None
    name = graph.name if graph is not None else type(module).__name__
    if isinstance(path, Mapping):
        if not all(isinstance(v, torch.Tensor) for v in path.values()):
            raise WeightsError("weights: not a state_dict (a mapping of names to tensors)", span)
        state = {k: v.detach().clone() for k, v in path.items()}
        source = "the state_dict given"
    else:
        state = read_state_dict(path, span)
        source = f"weights file {os.fspath(path)}"
    for key in ignore:
        state.pop(key, None)
    expected = module.state_dict()
    mismatch = compare(expected, state)
    if mismatch:
        e = WeightsError(
            f"{source} does not fit network '{name}' ({mismatch.counts()})",
            span,
            missing=mismatch.missing,
            unexpected=mismatch.unexpected,
            wrong_shape=mismatch.wrong_shape,
        )
        e.notes.extend(
            mismatch.report("the state_dict" if isinstance(path, Mapping) else "the file")
        )
        heads = [
            h
            for h in getattr(graph, "side_outputs", {})
            if any(k.startswith(f"{h}.") for k in mismatch.missing)
        ]
        if (
            heads
            and not mismatch.unexpected
            and not mismatch.wrong_shape
            and all(k.startswith(tuple(f"{h}." for h in heads)) for k in mismatch.missing)
        ):
            fix = (
                "; build it with aux_logits=false"
                if "aux_logits" in getattr(graph, "params", {})
                else ""
            )
            e.notes.append(
                f"every missing tensor is in the training-only side outputs ({', '.join(heads)}): "
                f"these weights are for the network without them{fix}"
            )
        if mismatch.unexpected and all(k.startswith("module.") for k in mismatch.unexpected):
            e.notes.append(
                "every unexpected key starts with 'module.': the file was saved "
                "from an nn.DataParallel wrapper; strip that prefix"
            )
        else:
            prefix = _outer_prefix(expected, state)
            if prefix:
                e.notes.append(
                    f"the tensors under '{prefix}' are this network's (the file holds a "
                    f"larger one, a detector around its backbone, say): pass those alone, "
                    f"weights={{k.removeprefix({prefix!r}): v for k, v in state.items() "
                    f"if k.startswith({prefix!r})}}"
                )
        raise e
    for key, tensor in state.items():
        if key not in expected:  # a batch norm's count, which a frozen batch norm drops
            continue
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


def _outer_prefix(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """The prefix under which ``given`` holds every tensor of ``expected`` with its shape
    (``"backbone."`` of a detector's file for its backbone), or ``""``."""
    first = next(iter(expected), None)
    if first is None:
        return ""
    for key in given:
        if key.endswith("." + first):
            prefix = key[: -len(first)]
            if all(
                prefix + k in given and tuple(given[prefix + k].shape) == tuple(v.shape)
                for k, v in expected.items()
                if not k.endswith(OPTIONAL_SUFFIXES)
            ):
                return prefix
    return ""


def _tensors(n: int) -> str:
    return "tensor" if n == 1 else "tensors"


def _first(names: list[str]) -> str:
    more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
