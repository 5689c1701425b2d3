"""Write a compiled network to a file; the format follows the extension.

* ``.py``: standalone PyTorch source (:mod:`archdsl.backends.python_source`);
* ``.pt2``: a ``torch.export`` program (``torch.export.save``; ``torch.export.load``
  reads it back and ``.module()`` runs it), in eval mode, with a dynamic batch dimension;
* ``.onnx``: torch's ONNX exporter (the ``torch.export``-based one, which needs the
  ``onnx`` and ``onnxscript`` packages: ``pip install archdsl[onnx]``), weights inside the
  file, a dynamic batch dimension;
* ``.pt`` or ``.pth``: the state_dict (``torch.save``), what ``weights=`` / ``--weights``
  load;
* ``.safetensors``: the state_dict as a safetensors file, which they load too.

Exports trace the module in eval mode, so training-only side outputs are not part of a
``.pt2`` or ``.onnx`` graph. A network whose ``outputs(...)`` names the values it returns
is exported returning them as a plain tuple (``.onnx``: outputs named by their fields).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from archdsl.backends.python_source import emit_python
from archdsl.ir import Graph
from archdsl.weights import write_safetensors

FORMATS: dict[str, str] = {
    ".py": "standalone PyTorch source",
    ".pt2": "torch.export program",
    ".onnx": "ONNX",
    ".pt": "state_dict",
    ".pth": "state_dict",
    ".safetensors": "state_dict, safetensors",
}

MAX_BATCH = 4096  # upper bound of the dynamic batch dimension of .pt2 and .onnx files


def format_of(path: str | os.PathLike[str]) -> str:
    """The format a file name asks for (its lower-case extension), or ValueError."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ValueError(
            f"unsupported extension {ext or '(none)'!r}; supported: {', '.join(FORMATS)}"
        )
    return ext


def example_input(module: nn.Module, batch: int = 2) -> torch.Tensor:
    """A random input of the network's input shape, on the module's device and dtype."""
    graph: Graph = module.archdsl_graph  # type: ignore[assignment]
    p = next(iter(module.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    x = torch.randn(batch, *graph.input_shape, generator=torch.Generator().manual_seed(0))
    return x.to(device=device, dtype=dtype)


def _traced_input(module: nn.Module, example: torch.Tensor | None) -> torch.Tensor:
    """The example to trace: a batch of one is repeated, since torch.export would take a
    size-1 dimension for a constant and refuse to make it dynamic."""
    example = example_input(module) if example is None else example
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    return example


def export_program(module: nn.Module, example: torch.Tensor | None = None) -> Any:
    """``torch.export.export`` of the module in eval mode, batch dimension dynamic. A
    network that returns ``Outputs`` (values named by ``outputs(...)``) is exported
    returning a plain tuple, in the same order, which any process loads."""
    example = _traced_input(module, example)
    module, _ = tuple_outputs(module)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _eval(module):
        return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))


def tuple_outputs(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """``module`` returning its ``Outputs`` as a plain tuple (a copy whose graph ends with
    the values, sharing the submodules: the same state_dict keys), and the field names;
    ``module`` itself and ``["output"]`` when it returns one tensor. A namedtuple made at
    run time has no name a fresh process could find, which ``torch.export.save`` needs."""
    from archdsl.backends.torch_backend import make_outputs

    if not isinstance(module, torch.fx.GraphModule):
        return module, ["output"]
    graph = copy.deepcopy(module.graph)
    (out,) = (n for n in graph.nodes if n.op == "output")
    made = out.args[0]
    if not (isinstance(made, torch.fx.Node) and made.target is make_outputs):
        return module, ["output"]
    values, names = cast(tuple[tuple[torch.fx.Node, ...], tuple[str, ...]], made.args)
    out.args = (values,)
    graph.erase_node(made)
    plain = torch.fx.GraphModule(module, graph, class_name=type(module).__name__)
    return plain.train(module.training), list(names)


def export_onnx(
    module: nn.Module, path: str | os.PathLike[str], example: torch.Tensor | None = None
) -> None:
    """The module as an ONNX file (opset of torch's exporter), batch dimension dynamic."""
    example = _traced_input(module, example)
    module, names = tuple_outputs(_in_default_layout(module))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # The exporter reports progress on stdout and warns about deprecations of its own.
    with _eval(module), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=names,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )


def _in_default_layout(module: nn.Module) -> nn.Module:
    """ONNX has no memory layout, so a channels-last network (as optimize_for_inference
    makes it) is exported from a copy in the default layout: the same ONNX graph, and no
    layout for the exporter to trip on (torch 2.9's cannot then keep the batch dynamic)."""
    if all(p.dim() != 4 or p.is_contiguous() for p in module.parameters()):
        return module
    from archdsl.optimize import default_layout

    return default_layout(copy.deepcopy(module))


def _write_py(module: nn.Module, path: Path, example: torch.Tensor | None) -> None:
    path.write_text(emit_python(module), encoding="utf-8")


def _write_pt2(module: nn.Module, path: Path, example: torch.Tensor | None) -> None:
    program = export_program(module, example)
    with warnings.catch_warnings():  # about channels_last weights, which it saves correctly
        warnings.filterwarnings("ignore", "No complete tensor found", UserWarning)
        torch.export.save(program, str(path))


def _write_onnx(module: nn.Module, path: Path, example: torch.Tensor | None) -> None:
    export_onnx(module, path, example)


def _write_pt(module: nn.Module, path: Path, example: torch.Tensor | None) -> None:
    torch.save(module.state_dict(), str(path))


def _write_safetensors(module: nn.Module, path: Path, example: torch.Tensor | None) -> None:
    write_safetensors(module.state_dict(), path)


WRITERS: dict[str, Callable[[nn.Module, Path, torch.Tensor | None], None]] = {
    ".py": _write_py,
    ".pt2": _write_pt2,
    ".onnx": _write_onnx,
    ".pt": _write_pt,
    ".pth": _write_pt,
    ".safetensors": _write_safetensors,
}


def export(
    module: nn.Module, path: str | os.PathLike[str], *, example: torch.Tensor | None = None
) -> Path:
    """Write ``module`` (built by archdsl) to ``path`` in the format its extension names.

    ``example`` is the input traced for ``.pt2`` and ``.onnx`` (default: a random batch of
    two of the network's input shape). Returns the path written.
    """
    path = Path(path)
    WRITERS[format_of(path)](module, path, example)
    return path


@contextlib.contextmanager
def _eval(module: nn.Module) -> Any:
    """Eval mode for the duration, then the mode the module had."""
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)
