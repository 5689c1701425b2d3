"""The public Python API. ``check*`` never imports torch; ``compile*`` and ``load`` do."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archdsl.elaborate.elaborator import Elaborator
from archdsl.elaborate.loader import Loader, NetworkRef, SpecModule, bundled_spec_root
from archdsl.elaborate.network_rules import unset_parameters
from archdsl.errors import (
    MAX_ERRORS,
    ArchError,
    ArchImportError,
    ArchLimitError,
    ArchNameError,
    ArchTypeError,
    Span,
    together,
)
from archdsl.gcpause import gc_paused, stack_room
from archdsl.ir import Graph

if TYPE_CHECKING:
    from torch import nn

    from archdsl.backbone import Outputs
    from archdsl.passes.lint import LintWarning

PathLike = str | os.PathLike[str]

# Python frames elaboration may need: chains nested to MAX_CHAIN_DEPTH take about 5 frames
# a level, expressions nested to MAX_EXPR_DEPTH about 3; so the limits, not the caller's
# stack depth, decide what is refused.
ELABORATION_FRAMES = 4000


def _pick_network(module: SpecModule, network: str | None) -> NetworkRef:
    if network is not None:
        ref = module.names.get(network)
        if not isinstance(ref, NetworkRef):
            from archdsl.elaborate.values import did_you_mean

            nets = [n for n, v in module.names.items() if isinstance(v, NetworkRef)]
            raise ArchNameError(
                f"no network '{network}' in this file{did_you_mean(network, nets)}",
                Span(module.path, 0, 0),
                module.source,
            )
        return ref
    if not module.local_networks:
        blocks = sorted(n for n, v in module.names.items() if type(v).__name__ == "BlockRef")
        has = f" (it defines blocks: {', '.join(blocks)})" if blocks else ""
        raise ArchNameError(f"no network in this file{has}", Span(module.path, 0, 0), module.source)
    return module.names[module.local_networks[-1]]  # type: ignore[no-any-return]


def _elaborate(
    loader: Loader, module: SpecModule, network: str | None, params: Mapping[str, Any]
) -> Graph:
    ref = _pick_network(module, network)
    try:  # the elaborator holds the values to the limits of literals (from_python)
        with stack_room(ELABORATION_FRAMES):
            return Elaborator().network(ref, params)
    except ArchError as e:
        _attach_source(e, loader)
        _attach_others(e, loader, module, ref, params)
        raise
    except RecursionError:
        raise ArchError(
            "spec nested too deeply to elaborate", ref.defn.span, module.source
        ) from None


def _attach_others(
    e: ArchError, loader: Loader, module: SpecModule, ref: NetworkRef, params: Mapping[str, Any]
) -> None:
    """Attach to the elaborator's error the other unknown names elaborating ``ref`` is
    certain to meet (see :mod:`archdsl.passes.resolve`), so that one check reports them all,
    beside those it found itself (in the other branches of a merge)."""
    from archdsl.passes.resolve import certain_errors

    known = {(type(err), err.span) for err in (e, *e.others)}
    others = [  # the elaborator's (other branches of a merge), then the certain ones
        *e.others,
        *(err for err in certain_errors(module, ref, params) if (type(err), err.span) not in known),
    ]
    others.sort(key=lambda err: (err.span.path, err.span.line, err.span.column))
    e.others = others[: MAX_ERRORS - 1]
    e.omitted += max(0, len(others) - (MAX_ERRORS - 1))
    for err in e.others:
        _attach_source(err, loader)


def _attach_source(e: ArchError, loader: Loader) -> None:
    if e.source is not None:
        return
    for mod in loader.cache.values():
        if mod.path == e.span.path:
            e.source = mod.source
            return


def check(
    source: str,
    *,
    network: str | None = None,
    path: str = "<string>",
    search_path: list[PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Graph:
    """Parse, elaborate and shape-check spec text; return the checked graph IR.

    ``network`` picks a network by name (default: the last one the text defines);
    keyword arguments override its parameters (``params=`` takes a mapping, for parameter
    names that clash with this function's own).
    """
    params = {**(params or {}), **kwargs}
    loader = Loader([Path(p) for p in search_path or []])
    with gc_paused():
        return _elaborate(loader, _load_source(loader, source, path), network, params)


def check_file(
    path: PathLike,
    *,
    network: str | None = None,
    search_path: list[PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Graph:
    """Like :func:`check` for a spec file."""
    params = {**(params or {}), **kwargs}
    loader = Loader([Path(p) for p in search_path or []])
    with gc_paused():
        return _elaborate(loader, _load_file(loader, path), network, params)


def _load_source(loader: Loader, source: str, path: str) -> SpecModule:
    try:
        return loader.load_source(source, path)
    except ArchError as e:
        _attach_source(e, loader)
        _note_name_for_text(e, source)
        raise


def _note_name_for_text(e: ArchError, source: str) -> None:
    """When spec text that failed to parse is one word or one path, say which function
    takes a bundled network's name or a file's path."""
    text = source.strip()
    if not text or len(text) > 4096 or any(c.isspace() for c in text):
        return
    if text.endswith(".arch") or os.path.isfile(text):
        e.notes.append(
            f"check() and compile() take spec text; for a spec file, "
            f"check_file({text!r}) or compile_file({text!r})"
        )
    elif text in list_specs():
        e.notes.append(
            f"check() and compile() take spec text; for the bundled network, "
            f"load_graph({text!r}) or load({text!r})"
        )


def _load_file(loader: Loader, path: PathLike) -> SpecModule:
    if not os.path.isfile(path):
        raise ArchImportError("no such spec file", Span(str(path), 0, 0))
    try:
        return loader.load_file(path)
    except ArchError as e:
        _attach_source(e, loader)
        raise


MAX_PARAMS = 4_000_000_000  # 16 GB of float32 weights


def count_params(graph: Graph) -> int:
    """Trainable parameters of the network, from the graph alone (no torch)."""
    from archdsl.ops import get_op

    total = 0
    for node in graph.nodes():
        opdef = get_op(node.op)
        if opdef is not None and node.path is not None:
            total += opdef.count_params(
                node.attrs, [graph.node(i).shape for i in graph.inputs(node.id)]
            )
    return total


def build(
    graph: Graph,
    *,
    device: Any = None,
    max_params: int = MAX_PARAMS,
    outputs: Outputs | None = None,
) -> nn.Module:
    """The torch module for a checked graph.

    With ``outputs`` (module paths of scopes or ops, e.g. ``["layer2", "layer3"]``, or
    ``{name: path}`` to return them under other names) the module is a backbone:
    ``forward`` returns ``{name: feature map}`` and computes nothing past the last one
    needed (see :mod:`archdsl.backbone`).

    Refuses (ArchLimitError) a network of more than ``max_params`` parameters unless built
    on the ``"meta"`` device, so a typo cannot allocate all memory.
    """
    wanted = None
    if outputs is not None:
        from archdsl.backbone import prune

        graph, wanted = prune(graph, outputs)
    n = count_params(graph)
    if n > max_params and str(device) != "meta":
        raise ArchLimitError(
            f"network '{graph.name}' has {n:,} parameters ({n * 4 / 2**30:,.1f} GiB in float32), "
            f"more than the limit of {max_params:,}; to build it anyway use "
            f'archdsl.build(graph, max_params=N) (CLI: --max-params N), or device="meta"',
            graph.span or Span("<network>", 0, 0),
        )
    from archdsl.backends.torch_backend import build as build_torch

    return build_torch(graph, device=device, outputs=wanted)


def build_with_weights(
    graph: Graph,
    weights: PathLike | Mapping[str, Any],
    *,
    device: Any = None,
    outputs: Outputs | None = None,
) -> nn.Module:
    """The module for a checked graph, its tensors read from a state_dict file (or taken,
    copied, from a state_dict), strictly.

    Built on the meta device, so nothing is allocated or initialised before the file's
    tensors take their places; a mismatch raises ``archdsl.weights.WeightsError`` (an
    ``ArchTypeError`` at the network's span) listing the missing, unexpected and
    wrong-shape tensors. A backbone (``outputs``) ignores the tensors of the layers it
    prunes, so a whole network's weights load into it.
    """
    from archdsl.weights import load_weights

    module = build(graph, device="meta", outputs=outputs)
    pruned: set[str] = set()
    if outputs is not None:
        pruned = set(build(graph, device="meta").state_dict()) - set(module.state_dict())
    module = load_weights(module, weights, ignore=pruned)
    return module.to(device) if device is not None else module


def compile(
    source: str,
    *,
    network: str | None = None,
    path: str = "<string>",
    search_path: list[PathLike] | None = None,
    device: Any = None,
    params: Mapping[str, Any] | None = None,
    outputs: Outputs | None = None,
    weights: PathLike | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Spec text -> ``torch.nn.Module`` (a backbone with ``outputs``: see :func:`build`);
    ``weights`` names a state_dict file to load, or is a state_dict (see
    :func:`build_with_weights`)."""
    graph = check(
        source, network=network, path=path, search_path=search_path, params=params, **kwargs
    )
    return _module(graph, device, outputs, weights)


def compile_file(
    path: PathLike,
    *,
    network: str | None = None,
    search_path: list[PathLike] | None = None,
    device: Any = None,
    params: Mapping[str, Any] | None = None,
    outputs: Outputs | None = None,
    weights: PathLike | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Spec file -> ``torch.nn.Module`` (a backbone with ``outputs``: see :func:`build`);
    ``weights`` names a state_dict file to load, or is a state_dict (see
    :func:`build_with_weights`)."""
    graph = check_file(path, network=network, search_path=search_path, params=params, **kwargs)
    return _module(graph, device, outputs, weights)


def _module(
    graph: Graph,
    device: Any,
    outputs: Outputs | None,
    weights: PathLike | Mapping[str, Any] | None,
) -> nn.Module:
    """The module of a checked graph, with ``weights`` loaded when given."""
    if weights is not None:
        return build_with_weights(graph, weights, device=device, outputs=outputs)
    return build(graph, device=device, outputs=outputs)


def spec_path(name: str) -> Path:
    """The file of a bundled spec, e.g. ``spec_path("resnet50")``."""
    path = bundled_spec_root() / f"{name}.arch"
    if not path.is_file():
        from archdsl.elaborate.values import did_you_mean

        if name.endswith(".arch") or "/" in name or os.sep in name:  # a file meant
            hint = (
                f"; for a spec file, archdsl.compile_file({name!r}) builds its network"
                f" and archdsl.check_file({name!r}) checks it"
            )
        else:
            hint = did_you_mean(name, list_specs())
        raise ArchNameError(f"no bundled spec '{name}'{hint}", Span(name, 0, 0))
    return path


def list_specs() -> list[str]:
    """Names of the bundled specs (``archdsl.load`` takes these)."""
    root = bundled_spec_root()
    return sorted(p.stem for p in root.glob("*.arch"))


def load(
    name: str,
    *,
    device: Any = None,
    params: Mapping[str, Any] | None = None,
    outputs: Outputs | None = None,
    weights: PathLike | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A bundled network by name: ``archdsl.load("resnet50", num_classes=10)``; with
    ``outputs=["layer2", "layer3", "layer4"]`` a backbone returning those feature maps;
    ``weights="resnet50-11ad3fa6.pth"`` loads a state_dict file into it (or
    ``weights=torchvision_model.state_dict()``, copied)."""
    return compile_file(
        spec_path(name), device=device, params=params, outputs=outputs, weights=weights, **kwargs
    )


def optimize_for_inference(module: nn.Module, **kwargs: Any) -> nn.Module:
    """A copy of a compiled network rewritten for inference: eval mode, batch norm folded
    into the layer before it, channels_last, side outputs and eval-mode identities gone.
    Outputs equal the original's (eval mode) up to float rounding. A module archdsl did
    not build is traced with ``torch.fx`` first; see :mod:`archdsl.optimize`."""
    from archdsl.optimize import optimize_for_inference as optimize

    return optimize(module, **kwargs)


def compile_for_inference(module: nn.Module, **kwargs: Any) -> nn.Module:
    """The fastest CPU path: :func:`optimize_for_inference`, then ``torch.compile`` with
    inductor freezing at every call's input shape (weights frozen as constants, oneDNN
    convolutions with fused ReLU and residual sum, C++ calling the kernels); each call runs
    under ``torch.no_grad()``. See :func:`archdsl.optimize.compile_for_inference`."""
    from archdsl.optimize import compile_for_inference as compile_frozen

    return compile_frozen(module, **kwargs)


def emit_python(network: Graph | nn.Module) -> str:
    """Standalone PyTorch source (it imports torch alone) for a checked graph or a module
    archdsl built; see :mod:`archdsl.backends.python_source`."""
    from archdsl.backends.python_source import emit_python as emit

    return emit(network)


def export(module: nn.Module, path: PathLike, **kwargs: Any) -> Path:
    """Write a compiled network to ``path``; the extension picks the format: ``.py``
    (source), ``.pt2`` (torch.export), ``.onnx``, ``.pt`` (state_dict); see
    :mod:`archdsl.backends.export`."""
    from archdsl.backends.export import export as write

    return write(module, path, **kwargs)


def load_graph(name: str, *, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Graph:
    """The checked graph of a bundled network (no torch)."""
    return check_file(spec_path(name), params=params, **kwargs)


def lint(
    source_or_path: str | os.PathLike[str],
    *,
    path: str | None = None,
    network: str | None = None,
    search_path: list[PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> list[LintWarning]:
    """Warnings for a spec (unused blocks and parameters, shadowed names, a conv's bias
    before batch norm; see :mod:`archdsl.passes.lint`), sorted by position; no torch.

    ``source_or_path`` is a spec file (a path object, or a one-line string naming an
    existing file) or spec text (``path`` then names it in the warnings). Each network
    the file defines is elaborated with its defaults so that warnings can use its graph;
    ``network`` or parameters pick one network, whose errors are raised as ``check`` would.
    Errors in the text itself (syntax, imports) raise an ``ArchError``.
    """
    params = {**(params or {}), **kwargs}
    loader = Loader([Path(p) for p in search_path or []])
    is_file = isinstance(source_or_path, os.PathLike) or (
        "\n" not in source_or_path and os.path.isfile(source_or_path)
    )
    try:
        if is_file:
            module = loader.load_file(source_or_path)
        else:
            module = loader.load_source(str(source_or_path), path or "<string>")
    except ArchError as e:
        _attach_source(e, loader)
        raise
    return _lint(loader, module, network, params)


def _lint(
    loader: Loader,
    module: SpecModule,
    network: str | None,
    params: Mapping[str, Any],
    checked: Graph | None = None,
) -> list[LintWarning]:
    """``lint`` of a loaded file; ``checked`` is the graph ``check`` made of the network
    that ``network`` and ``params`` pick, which is then not elaborated again."""
    from archdsl.passes.lint import lint as lint_module

    graphs = []
    if network is not None or params:
        graphs.append(checked or _elaborate(loader, module, network, params))
    else:
        for name in module.local_networks:
            try:
                graphs.append(_elaborate(loader, module, name, {}))
            except ArchError:
                continue  # reporting errors is check's job; lint what elaborates
    return lint_module(module, graphs)


def check_and_lint(
    path: PathLike,
    *,
    network: str | None = None,
    search_path: list[PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> tuple[list[Graph], list[LintWarning]]:
    """:func:`check_file` and :func:`lint` of one spec file, parsing it once and elaborating
    each network once (``archdsl check``). With ``source``, that is the spec's text, and
    ``path`` only its name (``<stdin>``). Without ``network`` and ``params`` every network
    the file defines is checked (but one whose parameters need values from a caller): an
    error in any raises, the others' errors attached. The graphs checked, in file order:
    the last is the file's last network (or the one named)."""
    params = dict(params or {})
    loader = Loader([Path(p) for p in search_path or []])
    with gc_paused():
        module = (
            _load_file(loader, path) if source is None else _load_source(loader, source, str(path))
        )
        if network is not None or params:
            graph = _elaborate(loader, module, network, params)
            return [graph], _lint(loader, module, network, params, checked=graph)
        return _check_every_network(loader, module)


def _check_every_network(
    loader: Loader, module: SpecModule
) -> tuple[list[Graph], list[LintWarning]]:
    from archdsl.passes.lint import lint as lint_module

    picked = _pick_network(module, None)
    graphs: list[Graph] = []
    errors: list[ArchError] = []
    for name in module.local_networks:
        ref = module.names[name]
        if ref is not picked and unset_parameters(ref):
            continue  # a network for others to call with values (resnet(layers))
        try:
            graphs.append(_elaborate(loader, module, name, {}))
        except ArchError as e:
            errors.append(e)
    if errors:
        raise together(errors)
    return graphs, lint_module(module, graphs)


def parse_value(text: str) -> Any:
    """A value written in the language (``10``, ``[3, 4, 6, 3]``, ``true``, ``"same"``), as
    the CLI's ``--set name=value`` takes it. Evaluated by archdsl's own evaluator."""
    from archdsl.elaborate.evaluate import Env, evaluate
    from archdsl.frontend import ast, parse

    module = parse(f"v = {text}", "<value>")
    if len(module.defs) != 1 or not isinstance(module.defs[0], ast.Assign):
        raise ArchTypeError(f"not a single value: {text}", Span("<value>", 1, 1))
    return evaluate(module.defs[0].value, Env({}))
