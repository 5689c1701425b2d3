"""The torch.fx modules the torch backend makes, one per scope, and what makes building
and calling them cheap: a scope of the same structure as an earlier one takes its code and
``forward`` and makes its fx graph only when asked (:meth:`ScopeModule.like`), and children
are read through class attributes (:func:`child`). See docs/design.md, "Building: one code
generation per distinct scope" and "Calling a scope costs what calling an nn.Sequential
costs".
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import fx, nn
from torch.fx.graph_module import _WrappedCall


@dataclass(frozen=True)
class Twin:
    """What the later scopes of one structure take from the first: its generated code and
    ``forward``, and a private copy of its fx graph (which a pass may later edit in place)."""

    template: fx.Graph
    code: dict[str, Any]  # CODE_ATTRIBUTES: what recompile set
    forward: Callable[..., Any]


class ScopeGraph(fx.Graph):
    """The fx graph of one scope, as the backend makes it: plain nodes, no types or meta,
    torch.fx's own code generation (what :meth:`ScopeModule.__init__`'s fast path needs)."""


def _graph_module_state() -> tuple[tuple[str, ...], dict[str, Any]]:
    """What torch.fx's ``GraphModule.__init__`` sets on a module beyond ``nn.Module``'s own
    state and the graph, read off one small GraphModule made by torch.fx itself, so that
    the fast paths below set exactly what the installed torch sets: the attributes
    ``recompile`` sets from the generated code (``_code``, ``_lineno_map`` and, from torch
    2.10, ``_prologue_start``), and the plain ones (``meta``, the hook lists, ...) with
    their initial values."""
    graph = fx.Graph()
    graph.output(graph.placeholder("x"))
    probe = fx.GraphModule({}, graph)
    own = vars(nn.Module()).keys() | {"_graph"}
    code = tuple(k for k in ("_code", "_lineno_map", "_prologue_start") if k in vars(probe))
    plain = {k: v for k, v in vars(probe).items() if k not in own and k not in code}
    return code, plain


CODE_ATTRIBUTES, _PLAIN = _graph_module_state()


def _plain_state() -> dict[str, Any]:
    """The plain attributes ``GraphModule.__init__`` sets, new for one module."""
    return {k: copy.copy(v) for k, v in _PLAIN.items()}  # None, or an empty dict or list


class ScopeModule(fx.GraphModule):
    """The GraphModule of one scope, made without torch.fx's fixed costs where a build can:

    - ``__init__`` sets the attributes that ``GraphModule.__init__`` sets for a dict of
      submodules without going through ``nn.Module.__setattr__`` for each plain attribute;
    - :meth:`like` makes a scope of the same structure as an earlier one from that one's
      generated code and compiled ``forward``, without building, generating or compiling.

    Each scope still gets its own class, as every GraphModule does, so a later
    ``recompile`` of one scope (an fx pass, :func:`archdsl.optimize_for_inference`) changes
    that scope alone; outside a build (deepcopy, unpickling, ``recompile`` after an edit)
    everything is torch.fx's own. What the fast paths set is what the installed torch's
    ``GraphModule.__init__`` and ``recompile`` set (read off a probe module at import:
    torch 2.10 added an attribute, for one); tests/test_torch_backend.py compares every
    scope of a built network with a GraphModule made by torch.fx from the same graph,
    attribute for attribute, so a torch version that sets more or otherwise fails there.
    """

    def __init__(self, root: nn.Module | dict[str, Any], graph: fx.Graph,
                 class_name: str = "GraphModule") -> None:
        if (
            not isinstance(root, dict)
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
        code = super().recompile()
        cls = type(self)
        wrapped = vars(cls).get("_wrapped_call")
        if "__call__" in vars(cls) and wrapped is not None and wrapped.cls_call is None:
            # torch.fx's `__call__` adds two Python frames to every call, to print the
            # generated code around an exception, which a traceback shows anyway (torch.fx
            # keeps the source in linecache): calls go straight to nn.Module.__call__.
            del cls.__call__
        return code


def child(name: str) -> property:
    """A class attribute for a scope's class that reads its child module ``name``. The
    generated ``forward`` reads each child as ``getattr(self, name)``, which for a module is
    a failed lookup and then ``nn.Module.__getattr__`` (about 0.6 us); this is one dict read
    (0.1 us). It reads ``_modules`` itself, so a child replaced or removed later is seen as
    such; a name that is no longer a child reads as it would without the class attribute
    (the instance's own attribute, then ``nn.Module.__getattr__``). A plain ``property``,
    because that is what dynamo inlines in every torch version (torch.export in strict
    mode, the default before torch 2.8, refuses any other kind of class attribute in 2.7 and
    2.9)."""

    def read(module: nn.Module) -> Any:
        own = module.__dict__
        try:
            return own["_modules"][name]
        except KeyError:
            if name in own:
                return own[name]
            return nn.Module.__getattr__(module, name)

    def write(module: nn.Module, value: Any) -> None:  # a plain attribute of that name
        module.__dict__[name] = value

    def delete(module: nn.Module) -> None:
        if module.__dict__.pop(name, read) is read:
            raise AttributeError(f"{type(module).__name__!r} object has no attribute {name!r}")

    read.child = name  # type: ignore[attr-defined]  # what is_child looks for
    return property(read, write, delete, f"The child module {name!r}.")


def is_child(attribute: Any) -> bool:
    """Whether a class attribute is one :func:`child` made."""
    return isinstance(attribute, property) and hasattr(attribute.fget, "child")


def bind_children(module: fx.GraphModule) -> None:
    """Give ``module``'s own class a :func:`child` property for each of its children."""
    cls = type(module)
    for name in module._modules:
        if not hasattr(cls, name):  # never over a method or attribute of the class
            setattr(cls, name, child(name))
