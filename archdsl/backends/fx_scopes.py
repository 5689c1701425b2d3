"""The torch.fx modules the torch backend makes, one per scope, and what makes building
and calling them cheap: a scope of the same structure as an earlier one takes its class,
code and ``forward`` and makes its fx graph only when asked (:meth:`ScopeModule.like`), and
children are read through class attributes (:func:`child`). See docs/design.md, "Building:
one code generation per distinct scope" and "Calling a scope costs what calling an
nn.Sequential costs".
"""

from __future__ import annotations

import copy
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from torch import fx, nn
from torch.fx.graph_module import _WrappedCall


@dataclass(frozen=True)
class Twin:
    """What the later scopes of one structure take from the first: its generated code and
    ``forward``, a private copy of its fx graph (which a pass may later edit in place), and
    the class of the scopes of this structure with each class name."""

    template: fx.Graph
    code: dict[str, Any]  # CODE_ATTRIBUTES: what recompile set
    forward: Callable[..., Any]
    classes: dict[str, type] = field(default_factory=dict)


M = TypeVar("M", bound=nn.Module)

_SHARED: weakref.WeakSet[type[nn.Module]] = weakref.WeakSet()
"""Scope classes that more than one scope has: a scope of one of them that recompiles
first moves to a class of its own (:meth:`ScopeModule.recompile`)."""

_KIN: weakref.WeakKeyDictionary[type[nn.Module], weakref.WeakSet[type[nn.Module]]] = (
    weakref.WeakKeyDictionary()
)
"""For a shared scope class, and each class its scopes moved to when they recompiled, all
of these classes: a scope that recompiles to the code of one of them joins it."""


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
    torch 2.10 added an attribute, for one); tests/test_torch_persistence.py compares every
    scope of a built network with a GraphModule made by torch.fx from the same graph,
    attribute for attribute, so a torch version that sets more or otherwise fails there.
    """

    def __init__(
        self, root: nn.Module | dict[str, Any], graph: fx.Graph, class_name: str = "GraphModule"
    ) -> None:
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

    def _start(self, root: dict[str, nn.Module | nn.Parameter], class_name: str) -> None:
        nn.Module.__init__(self)
        type(self).__name__ = class_name
        for name, module in root.items():  # the call_module and get_attr targets, in order
            # (a get_attr target is a parameter of the scope itself: layer_scale's)
            setattr(self, name, module)

    @classmethod
    def like(
        cls, root: dict[str, nn.Module | nn.Parameter], twin: Twin, class_name: str
    ) -> ScopeModule:
        """A scope of the same structure as ``twin``'s first scope: the same generated code
        and ``forward`` and, for the same class name, the same class; its fx graph is copied
        from ``twin.template`` when first asked for (``gm.graph``, a deepcopy, pickling),
        not built at the build. What it sets on the instance is what ``__init__`` sets for a
        first scope."""
        shared = twin.classes.get(class_name)
        if shared is not None:
            self = cast(ScopeModule, object.__new__(shared))
            _SHARED.add(shared)
        else:
            self = cls.__new__(cls)  # GraphModule.__new__: a class of its own
            new = twin.classes[class_name] = type(self)
            new.forward = twin.forward
            new._wrapped_call = _WrappedCall(new, None)  # type: ignore[attr-defined]
        self._start(root, class_name)
        self.__dict__.update(twin.code, _graph_template=twin.template, **_plain_state())
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

    def _repr_svg_(self) -> str | None:
        """A notebook shows a network archdsl built (the root scope) as its diagram; None
        (shown as text) for other scopes, or without Graphviz."""
        graph = self.__dict__.get("archdsl_graph")
        return graph._repr_svg_() if graph is not None else None

    # torch.fx reads `self.__dict__["_graph"]` in these: the graph must be there
    def __deepcopy__(self, memo: dict[int, Any]) -> fx.GraphModule:
        """torch.fx's deepcopy, which gives the copy a class of its own named "GraphModule"
        and keeps only the attributes its graph uses; then the copy has every attribute of
        the original (the root's ``archdsl_graph``), and its class is what the original's
        is: copies of scopes that share a class share one (made for the first of them),
        with the original's name, child properties and other class attributes."""
        self._graph  # noqa: B018 - made if not yet
        res = super().__deepcopy__(memo)
        for name, value in vars(self).items():
            if name not in vars(res):
                res.__dict__[name] = copy.deepcopy(value, memo)
        cls = type(self)
        classes = memo.setdefault(id(_COPIED_CLASSES), {})  # this deepcopy's: original -> copy's
        if cls in classes:
            _join(res, classes[cls])
            return res
        new = classes[cls] = type(res)
        new.__name__ = cls.__name__
        for name, value in vars(cls).items():
            if name not in vars(new) and name not in ("__dict__", "__weakref__"):
                setattr(new, name, value)
        return res

    def __reduce__(self) -> Any:
        """torch.fx's pickling (the generated code; the graph is traced again from it), then
        the module made from it is a scope like this one: its class name, its children read
        through the class, and one class for the unpickled scopes of one code and name."""
        self._graph  # noqa: B018
        from archdsl.memory import recomputed

        flag = recomputed(self)  # grad_checkpointing's forward goes as a flag, not pickled
        own_forward = self.__dict__.pop("forward") if flag else None
        try:
            reduced = super().__reduce__()
        finally:
            if flag:
                self.__dict__["forward"] = own_forward
        return (_unpickled, (*reduced, type(self).__name__, flag))

    def __reduce_package__(self, exporter: Any) -> Any:
        self._graph  # noqa: B018
        return super().__reduce_package__(exporter)

    def recompile(self) -> fx.graph.PythonCode:
        """torch.fx's ``recompile``. A scope whose class other scopes share compiles into a
        class of its own, so that a new ``forward`` is its alone; if its code turns out to
        be that of the class it left (a parent's ``__init__`` recompiles its children), or
        of a class another scope of that class moved to (the same pass on twin scopes), it
        takes that class instead."""
        old = type(self)
        if old in _SHARED:
            self.__class__ = _class_like(old, old.__bases__)
        code = super().recompile()
        cls = type(self)
        wrapped = vars(cls).get("_wrapped_call")
        if "__call__" in vars(cls) and wrapped is not None and wrapped.cls_call is None:
            # torch.fx's `__call__` adds two Python frames to every call, to print the
            # generated code around an exception, which a traceback shows anyway (torch.fx
            # keeps the source in linecache): calls go straight to nn.Module.__call__.
            del cls.__call__
        if cls is not old:  # the same code as a kin class (the one it left, say): join it
            kin = _KIN.setdefault(old, weakref.WeakSet([old]))
            same = next((k for k in kin if _same_function(cls.forward, k.forward)), None)
            if same is not None:
                _join(self, same)
            else:
                kin.add(cls)
                _KIN[cls] = kin
        return code


_COPIED_CLASSES = object()  # its id keys a deepcopy's memo entry for the classes it copied


def _class_like(model: type[M], bases: tuple[type, ...]) -> type[M]:
    """A class on ``bases`` with ``model``'s name and attributes, but for those torch.fx's
    ``recompile`` makes for each class (``_wrapped_call``, ``__call__``)."""
    attributes = {
        k: v
        for k, v in vars(model).items()
        if k not in ("__dict__", "__weakref__", "__call__", "_wrapped_call")
    }
    metaclass: Any = type(model)
    return cast("type[M]", metaclass(model.__name__, bases, attributes))


def _join(module: nn.Module, cls: type) -> None:
    """Give ``module`` the class ``cls``, which another scope has."""
    module.__class__ = cls
    _SHARED.add(cls)


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """Whether two generated ``forward`` functions run the same code on the same objects:
    equal code objects (the file name, which torch.fx numbers, aside) whose global names
    are bound to the same objects."""
    code = a.__code__
    missing = object()
    return code == b.__code__ and all(
        a.__globals__.get(name, missing) is b.__globals__.get(name, missing)
        for name in code.co_names
    )


_UNPICKLED: weakref.WeakValueDictionary[tuple[str, str], type[nn.Module]] = (
    weakref.WeakValueDictionary()
)
"""The classes of unpickled scopes, by class name and generated code."""


def _unpickled(
    rebuild: Callable[..., fx.GraphModule],
    args: tuple[Any, ...],
    class_name: str,
    recomputed: bool = False,
) -> fx.GraphModule:
    """A scope unpickled: torch.fx's module, moved to a :class:`ScopeModule` class;
    ``recomputed`` if :func:`archdsl.grad_checkpointing` had set it so."""
    gm = _scope_unpickled(rebuild(*args), class_name)
    if recomputed:
        from archdsl.memory import recomputed_forward

        gm.forward = types.MethodType(recomputed_forward, gm)
    return gm


def _scope_unpickled(gm: fx.GraphModule, class_name: str) -> fx.GraphModule:
    made = type(gm)  # torch.fx's class for this module alone, with its forward
    key = (class_name, gm.code)
    cls = _UNPICKLED.get(key)
    if cls is not None and _same_function(made.forward, cls.forward):
        _join(gm, cls)
        return gm
    cls = _class_like(made, (ScopeModule,))
    cls.__name__ = class_name
    cls._wrapped_call = _WrappedCall(cls, None)  # type: ignore[attr-defined]
    gm.__class__ = cls
    bind_children(gm)
    _UNPICKLED[key] = cls
    return gm


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
    """Give ``module``'s own class a :func:`child` property for each of its children,
    listed where TorchScript looks for properties it must not compile (it reads the
    children themselves)."""
    cls = type(module)
    added = [name for name in module._modules if not hasattr(cls, name)]  # never over a
    for name in added:  # method or attribute of the class
        setattr(cls, name, child(name))
    if added:
        cls.__jit_unused_properties__ = [*getattr(cls, "__jit_unused_properties__", ()), *added]
