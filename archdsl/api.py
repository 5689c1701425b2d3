"""The public Python API. ``check*`` never imports torch; ``compile*`` and ``load`` do."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archdsl.elaborate.elaborator import Elaborator
from archdsl.elaborate.loader import Loader, NetworkRef, SpecModule, bundled_spec_root
from archdsl.errors import (
    ArchError,
    ArchImportError,
    ArchLimitError,
    ArchNameError,
    ArchTypeError,
    Span,
)
from archdsl.ir import Graph

if TYPE_CHECKING:
    from torch import nn

PathLike = str | os.PathLike[str]


def _python_value(name: str, value: Any) -> Any:
    """A parameter value given from Python or the CLI, as a language value."""
    if isinstance(value, (list, tuple)):
        return tuple(_python_value(name, v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ArchTypeError(f"parameter '{name}': cannot use a Python {type(value).__name__} as a value")


def _pick_network(module: SpecModule, network: str | None) -> NetworkRef:
    if network is not None:
        ref = module.names.get(network)
        if not isinstance(ref, NetworkRef):
            from archdsl.elaborate.evaluate import did_you_mean

            nets = [n for n, v in module.names.items() if isinstance(v, NetworkRef)]
            raise ArchNameError(f"no network '{network}' in this file{did_you_mean(network, nets)}",
                                Span(module.path, 0, 0), module.source)
        return ref
    if not module.local_networks:
        blocks = sorted(n for n, v in module.names.items() if type(v).__name__ == "BlockRef")
        has = f" (it defines blocks: {', '.join(blocks)})" if blocks else ""
        raise ArchNameError(f"no network in this file{has}", Span(module.path, 0, 0), module.source)
    return module.names[module.local_networks[-1]]  # type: ignore[no-any-return]


def _elaborate(loader: Loader, module: SpecModule, network: str | None, params: Mapping[str, Any]) -> Graph:
    ref = _pick_network(module, network)
    values = {k: _python_value(k, v) for k, v in params.items()}
    try:
        return Elaborator().network(ref, values)
    except ArchError as e:
        _attach_source(e, loader)
        raise
    except RecursionError:
        raise ArchError("spec nested too deeply to elaborate", ref.defn.span, module.source) from None


def _attach_source(e: ArchError, loader: Loader) -> None:
    if e.source is not None:
        return
    for mod in loader.cache.values():
        if mod.path == e.span.path:
            e.source = mod.source
            return


def check(source: str, *, network: str | None = None, path: str = "<string>",
          search_path: list[PathLike] | None = None, params: Mapping[str, Any] | None = None,
          **kwargs: Any) -> Graph:
    """Parse, elaborate and shape-check spec text; return the checked graph IR.

    ``network`` picks a network by name (default: the last one the text defines);
    keyword arguments override its parameters (``params=`` takes a mapping, for parameter
    names that clash with this function's own).
    """
    params = {**(params or {}), **kwargs}
    loader = Loader([Path(p) for p in search_path or []])
    try:
        module = loader.load_source(source, path)
    except ArchError as e:
        _attach_source(e, loader)
        raise
    return _elaborate(loader, module, network, params)


def check_file(path: PathLike, *, network: str | None = None,
               search_path: list[PathLike] | None = None, params: Mapping[str, Any] | None = None,
               **kwargs: Any) -> Graph:
    """Like :func:`check` for a spec file."""
    params = {**(params or {}), **kwargs}
    loader = Loader([Path(p) for p in search_path or []])
    if not os.path.isfile(path):
        raise ArchImportError("no such spec file", Span(str(path), 0, 0))
    try:
        module = loader.load_file(path)
    except ArchError as e:
        _attach_source(e, loader)
        raise
    return _elaborate(loader, module, network, params)


MAX_PARAMS = 4_000_000_000  # 16 GB of float32 weights


def count_params(graph: Graph) -> int:
    """Trainable parameters of the network, from the graph alone (no torch)."""
    from archdsl.ops import get_op

    total = 0
    for node in graph.nodes():
        opdef = get_op(node.op)
        if opdef is not None and node.path is not None:
            total += opdef.count_params(node.attrs, [graph.node(i).shape for i in graph.inputs(node.id)])
    return total


def build(graph: Graph, *, device: Any = None, max_params: int = MAX_PARAMS) -> nn.Module:
    """The torch module for a checked graph.

    Refuses (ArchLimitError) a network of more than ``max_params`` parameters unless built
    on the ``"meta"`` device, so a typo cannot allocate all memory.
    """
    n = count_params(graph)
    if n > max_params and str(device) != "meta":
        raise ArchLimitError(
            f"network '{graph.name}' has {n:,} parameters ({n * 4 / 2**30:,.1f} GiB in float32), "
            f"more than the limit of {max_params:,}; to build it anyway use "
            f"archdsl.build(graph, max_params=N) (CLI: --max-params N), or device=\"meta\"",
            graph.span or Span("<network>", 0, 0),
        )
    from archdsl.backends.torch_backend import build as build_torch

    return build_torch(graph, device=device)


def compile(source: str, *, network: str | None = None, path: str = "<string>",
            search_path: list[PathLike] | None = None, device: Any = None,
            params: Mapping[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """Spec text -> ``torch.nn.Module``."""
    graph = check(source, network=network, path=path, search_path=search_path, params=params, **kwargs)
    return build(graph, device=device)


def compile_file(path: PathLike, *, network: str | None = None,
                 search_path: list[PathLike] | None = None, device: Any = None,
                 params: Mapping[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """Spec file -> ``torch.nn.Module``."""
    graph = check_file(path, network=network, search_path=search_path, params=params, **kwargs)
    return build(graph, device=device)


def spec_path(name: str) -> Path:
    """The file of a bundled spec, e.g. ``spec_path("resnet50")``."""
    path = bundled_spec_root() / f"{name}.arch"
    if not path.is_file():
        from archdsl.elaborate.evaluate import did_you_mean

        raise ArchNameError(f"no bundled spec '{name}'{did_you_mean(name, list_specs())}",
                            Span(name, 0, 0))
    return path


def list_specs() -> list[str]:
    """Names of the bundled specs (``archdsl.load`` takes these)."""
    root = bundled_spec_root()
    return sorted(p.stem for p in root.glob("*.arch"))


def load(name: str, *, device: Any = None, params: Mapping[str, Any] | None = None,
         **kwargs: Any) -> nn.Module:
    """A bundled network by name: ``archdsl.load("resnet50", num_classes=10)``."""
    return compile_file(spec_path(name), device=device, params=params, **kwargs)


def load_graph(name: str, *, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Graph:
    """The checked graph of a bundled network (no torch)."""
    return check_file(spec_path(name), params=params, **kwargs)


def parse_value(text: str) -> Any:
    """A value written in the language (``10``, ``[3, 4, 6, 3]``, ``true``, ``"same"``), as
    the CLI's ``--set name=value`` takes it. Evaluated by archdsl's own evaluator."""
    from archdsl.elaborate.evaluate import Env, evaluate
    from archdsl.frontend import ast, parse

    module = parse(f"v = {text}", "<value>")
    if len(module.defs) != 1 or not isinstance(module.defs[0], ast.Assign):
        raise ArchTypeError(f"not a single value: {text}", Span("<value>", 1, 1))
    return evaluate(module.defs[0].value, Env({}))
