"""The torch.fx modules the torch backend makes, one per scope, and what makes building
them cheap: scopes of the same structure share generated code and ``forward``
(:class:`ScopeGraph`, :class:`ScopeModule`), a later one makes its fx graph only when asked
(:meth:`ScopeModule.like`), and children are read through class attributes
(:class:`Child`). See docs/design.md, "Building: one code generation per distinct scope"
and "Calling a scope costs what calling an nn.Sequential costs".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn
from torch.fx.experimental import _config as fx_experimental_config
from torch.fx.graph_module import _WrappedCall


@dataclass(frozen=True)
class Twin:
    """What the later scopes of one structure take from the first: its generated code and
    ``forward``, and a private copy of its fx graph (which a pass may later edit in place)."""

    template: fx.Graph
    code: dict[str, Any]  # _code, _lineno_map, _prologue_start: what recompile set
    forward: Callable[..., Any]


@dataclass
class Shared:
    """What structurally identical scopes of one build share: the Python torch.fx generates
    for them (by structure, see :meth:`ScopeGraph._structure`) and the ``forward`` compiled
    from it (by that Python's identity), with the ``__call__`` torch.fx installs beside it."""

    code: dict[tuple[Any, ...], fx.graph.PythonCode] = field(default_factory=dict)
    compiled: dict[int, tuple[fx.graph.PythonCode, Callable[..., Any]]] = field(
        default_factory=dict
    )


SHARED: ContextVar[Shared | None] = ContextVar("archdsl_shared", default=None)


class ScopeGraph(fx.Graph):
    """The fx graph of one scope. While a network is built, scopes of the same structure
    (the same nodes, names, targets and wiring, as the blocks of a stage have) share the
    Python that torch.fx generates for them: generating it was most of the cost of building
    a network of many small blocks (efficientnet_b0: 107 scopes, 9 distinct). Outside a build,
    or for a graph with anything the key does not cover (types, meta, another codegen), it
    is an ordinary ``fx.Graph``."""

    def python_code(self, root_module: str, **kwargs: Any) -> fx.graph.PythonCode:
        shared = SHARED.get()
        key = self._structure(root_module, kwargs) if shared is not None else None
        if key is None:
            return super().python_code(root_module, **kwargs)
        assert shared is not None
        code = shared.code.get(key)
        if code is None:
            code = shared.code[key] = super().python_code(root_module, **kwargs)
        return code

    def _structure(self, root_module: str, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        """What the generated code depends on; None where that is more than the nodes."""
        if type(self._codegen) is not fx.graph.CodeGen:
            return None
        key: list[Any] = [root_module, tuple(sorted(kwargs.items()))]
        for node in self.nodes:
            if node.type is not None or node.meta:
                return None
            key.append((node.op, node.name, node.target, repr(node.args), repr(node.kwargs)))
        return tuple(key)


def _plain_state() -> dict[str, Any]:
    """The plain attributes ``GraphModule.__init__`` sets (torch 2.13), new for one module."""
    return {
        "_tracer_cls": None,
        "_tracer_extras": {},
        "meta": {},
        "_replace_hooks": [],
        "_create_node_hooks": [],
        "_erase_node_hooks": [],
        "_deepcopy_hooks": [],
        "shape_env": None,
    }


class ScopeModule(fx.GraphModule):
    """The GraphModule of one scope. While a network is built, it skips two of torch.fx's
    fixed costs per scope, the largest left once the code is generated once per structure:

    - a scope whose generated Python is that of an earlier scope (see :class:`ScopeGraph`)
      takes the ``forward`` compiled for the earlier one instead of compiling and exec'ing
      the same source again (about 0.1 ms a scope);
    - ``__init__`` sets the attributes that ``GraphModule.__init__`` sets for a dict of
      submodules without going through ``nn.Module.__setattr__`` for each plain attribute.

    Each scope still gets its own class, as every GraphModule does, so a later
    ``recompile`` of one scope (an fx pass, :func:`archdsl.optimize_for_inference`) changes
    that scope alone; outside a build (deepcopy, unpickling, ``recompile`` after an edit)
    everything is torch.fx's own. What the fast paths set mirrors torch 2.13's
    ``GraphModule.__init__`` and ``recompile``; tests/test_torch_backend.py compares every
    scope of a built network with a GraphModule made by torch.fx from the same graph, so a
    torch upgrade that changes either fails there.
    """

    def __init__(self, root: nn.Module | dict[str, Any], graph: fx.Graph,
                 class_name: str = "GraphModule") -> None:
        if (
            SHARED.get() is None
            or not isinstance(root, dict)
            or not isinstance(graph, ScopeGraph)
            or graph._tracer_cls is not None
            or graph._tracer_extras
            or any("." in name for name in root)  # a backbone's root: nested targets
        ):
            super().__init__(root, graph, class_name)
            return
        self._start(root, class_name)
        self.__dict__["_graph"] = graph
        graph.owning_module = self
        self.recompile()
        self.__dict__.update(_plain_state())

    def _start(self, root: dict[str, nn.Module], class_name: str) -> None:
        nn.Module.__init__(self)
        type(self).__name__ = class_name
        for name, module in root.items():  # the call_module and get_attr targets, in order
            setattr(self, name, module)

    @classmethod
    def like(cls, root: dict[str, nn.Module], twin: Twin, class_name: str) -> ScopeModule:
        """A scope of the same structure as ``twin``'s first scope: the same generated code
        and ``forward``, and an fx graph copied from ``twin.template`` when first asked for
        (``gm.graph``, a deepcopy, pickling), not built at the build. What it sets is what
        ``__init__`` sets for a first scope."""
        self = cls.__new__(cls)  # GraphModule.__new__: the scope's own class
        self._start(root, class_name)
        self.__dict__.update(twin.code, _graph_template=twin.template, **_plain_state())
        cls = type(self)
        cls.forward = twin.forward
        cls._wrapped_call = _WrappedCall(cls, None)  # type: ignore[attr-defined]
        return self

    def __getattr__(self, name: str) -> Any:
        if name == "_graph" and "_graph_template" in self.__dict__:
            template = self.__dict__.pop("_graph_template")
            graph = ScopeGraph()
            graph.output(graph.graph_copy(template, {}))
            self.__dict__["_graph"] = graph
            graph.owning_module = self
            return graph
        return super().__getattr__(name)

    # torch.fx reads `self.__dict__["_graph"]` in these: the graph must be there
    def __deepcopy__(self, memo: dict[int, Any]) -> fx.GraphModule:
        self._graph  # noqa: B018 - made if not yet
        return super().__deepcopy__(memo)

    def __reduce__(self) -> Any:
        self._graph  # noqa: B018
        return super().__reduce__()

    def __reduce_package__(self, exporter: Any) -> Any:
        self._graph  # noqa: B018
        return super().__reduce_package__(exporter)

    def recompile(self) -> fx.graph.PythonCode:
        code = self._compile()
        cls = type(self)
        if "__call__" in vars(cls) and cls._wrapped_call.cls_call is None:  # type: ignore[attr-defined]
            # torch.fx's `__call__` adds two Python frames to every call, to print the
            # generated code around an exception, which a traceback shows anyway (torch.fx
            # keeps the source in linecache): calls go straight to nn.Module.__call__.
            del cls.__call__
        return code

    def _compile(self) -> fx.graph.PythonCode:
        shared = SHARED.get()
        if (
            shared is None
            or fx_experimental_config.enrich_profiler_metadata  # code rewritten per module
            or not isinstance(self._graph, ScopeGraph)
            or type(self).__dict__.keys() & {"__call__", "_wrapped_call"}
        ):
            return super().recompile()
        code = self._graph.python_code(root_module="self", record_func=False)
        hit = shared.compiled.get(id(code))
        if hit is None or hit[0] is not code:  # the first scope of this code, or unshared code
            code = super().recompile()
            shared.compiled[id(code)] = (code, type(self).forward)
            return code
        _, forward = hit
        self.__dict__.update(
            _code=code.src, _lineno_map=code._lineno_map, _prologue_start=code._prologue_start
        )
        cls = type(self)
        cls.forward = forward
        cls._wrapped_call = _WrappedCall(cls, None)  # type: ignore[attr-defined]
        self._recompile_submodules()
        return code


class Child:
    """A class attribute of a scope's class that reads one child module. The generated
    ``forward`` reads each child as ``getattr(self, name)``, which for a module is a failed
    lookup and then ``nn.Module.__getattr__`` (about 0.6 us); this is one dict read (0.1 us).
    It reads ``_modules`` itself, so a child replaced or removed later is seen as such, and
    a name that is no longer a child falls back to ``nn.Module.__getattr__``."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj: nn.Module | None, cls: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            return obj.__dict__["_modules"][self.name]
        except KeyError:
            return nn.Module.__getattr__(obj, self.name)


def bind_children(module: fx.GraphModule) -> None:
    """Give ``module``'s own class a :class:`Child` for each of its children."""
    cls = type(module)
    for name in module._modules:
        if not hasattr(cls, name):  # never over a method or attribute of the class
            setattr(cls, name, Child(name))


@contextlib.contextmanager
def sharing_code() -> Iterator[None]:
    token = SHARED.set(Shared())
    try:
        yield
    finally:
        SHARED.reset(token)
