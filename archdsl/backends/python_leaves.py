"""How the ``.py`` output writes one leaf module: a constructor call, and what the file must
carry for it.

* A ``torch.nn`` class is written as a call of its constructor (``nn.Conv2d(64, 128,
  kernel_size=3)``): the arguments, their defaults and their order come from the class's
  signature, their values from the module's attributes.
* A class torch lacks is written the same way, and the file carries its source:
  archdsl's small modules (``GlobalPool2d``, ``Scale`` ...) by ``inspect.getsource``, the
  deformable convolution as the definitions :data:`archdsl.backends.deform_conv.STANDALONE`
  names, read from that module's own source, so the emitted class cannot drift from the
  one archdsl builds.
* The module of an op registered from Python (:func:`archdsl.register_op`) is written as a
  call of its ``build`` function with the op's attributes and input shapes, exactly as
  archdsl calls it, and the file imports that function (``from my_layers import
  build_coord_att``): the one import besides torch, possible only when ``build`` is a
  module-level function or class of an importable module. Anything else is an
  ``ArchTypeError`` naming the op.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from archdsl.backends import deform_conv, torch_modules
from archdsl.errors import ArchTypeError
from archdsl.ir import OpNode
from archdsl.ops import Shape, bind_defaults, custom, get_op, normalize_attrs

NO_DEFAULT = inspect.Parameter.empty
# Arguments a module stores as something else, or never needs written out.
_SKIPPED = frozenset({"device", "dtype", "return_indices"})

# Constructor arguments whose values are channel or feature counts: parameters of this kind
# may be shared by several modules of a block (a conv's out_channels is the next bn's
# num_features), and are passed positionally, as hand-written code does.
CHANNEL_ARGS = frozenset(
    {
        "in_channels",
        "out_channels",
        "num_features",
        "in_features",
        "out_features",
        "num_channels",
        "normalized_shape",
        "channels",
    }
)

# The module classes archdsl builds, with how many leading arguments are written
# positionally (``nn.Conv2d(64, 128, kernel_size=3)``).
# fmt: off
POSITIONAL: dict[type, int] = {
    **dict.fromkeys((nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.GroupNorm,
                     deform_conv.DeformConv2d), 2),
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, torch_modules.FrozenBatchNorm2d,
                     nn.LayerNorm, torch_modules.LayerNorm2d,
                     nn.LocalResponseNorm, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                     torch_modules.Scale), 1),
    **dict.fromkeys((nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                     nn.Tanh, nn.Identity, nn.LeakyReLU, torch_modules.GELU, nn.Softmax, nn.MaxPool2d,
                     nn.AvgPool2d, nn.Flatten, nn.Dropout, torch_modules.GlobalPool2d,
                     torch_modules.StochasticDepth, nn.Upsample), 0),
    torch_modules.ChannelAffine: 2,
    torch_modules.ChannelLinear: 2,
    torch_modules.ChannelSlice: 2,
    torch_modules.ChannelShuffle: 1,
}
# fmt: on

# The factories of the parameters that are a block's own (``PARAMETER_OPS``), with how
# many leading arguments are written positionally: the file carries their source and the
# block calls them as it would a module's class (``self.layer_scale = layer_scale(96)``).
FACTORIES: dict[str, tuple[Callable[..., nn.Parameter], int]] = {
    "layer_scale": (torch_modules.layer_scale, 1),
}

# Classes whose source is more than the class itself: the module holding them and the
# top-level definitions, in file order, the file must carry.
_DEFINITIONS: dict[type, tuple[ModuleType, Sequence[str]]] = {
    deform_conv.DeformConv2d: (deform_conv, deform_conv.STANDALONE),
}


@dataclass(frozen=True)
class Support:
    """What the file needs for a leaf that is not ``torch.nn``'s: definitions it carries
    (``source``), or an import (``from module import names[0]``)."""

    key: str  # the qualified name of the class or factory
    names: tuple[str, ...]  # the top-level names it defines or imports
    source: str = ""
    module: str = ""


@dataclass(frozen=True)
class Leaf:
    """A leaf module as a call: ``func(positional..., keyword=value ...)``."""

    func: str  # "nn.Conv2d", "GlobalPool2d", or an imported factory's qualified name
    positional: tuple[str, ...]
    args: tuple[tuple[str, Any, Any], ...]  # (argument, value, default), positional first
    support: Support | None = None


def leaf(node: OpNode, module: nn.Module | None, input_shapes: Sequence[Shape]) -> Leaf:
    """How to write ``module``, which archdsl built for ``node`` from ``input_shapes``; for
    a parameter of its block (``module`` None), how to write the call that makes it."""
    if module is None:
        factory, n = FACTORIES[node.op]
        func, positional, keywords, support = _class_spec(factory, n)
        opdef = get_op(node.op)
        assert opdef is not None
        attrs = normalize_attrs(opdef, bind_defaults(opdef, node.attrs))
        values = {"channels": input_shapes[0][0], **attrs}
        args = [(name, values[name], NO_DEFAULT) for name in positional]
        args += [(name, values[name], default) for name, default in keywords]
        return Leaf(func, positional, tuple(args), support)
    if type(module) in POSITIONAL:
        func, positional, keywords, support = _class_spec(type(module))
        args = [(name, _read(module, name, NO_DEFAULT), NO_DEFAULT) for name in positional]
        args += [(name, _read(module, name, default), default) for name, default in keywords]
        return Leaf(func, positional, tuple(args), support)
    opdef = get_op(node.op)
    if opdef is not None and opdef.name in custom.BUILDERS:
        build = custom.BUILDERS[opdef.name]
        where = importable(build)
        if where is None:
            raise ArchTypeError(
                f"the .py output cannot write the {type(module).__name__} module of op "
                f"'{opdef.name}' (registered from Python): its build function "
                f"{getattr(build, '__qualname__', repr(build))} cannot be imported (a lambda, "
                "a local function or one defined in __main__); register a module-level "
                "function or class of an importable module as build, and the file imports it",
                node.span,
            )
        module_name, qualname = where
        attrs = normalize_attrs(opdef, bind_defaults(opdef, node.attrs))
        shapes = [tuple(s) for s in input_shapes]
        return Leaf(
            qualname,
            ("attrs", "input_shapes"),
            (("attrs", attrs, NO_DEFAULT), ("input_shapes", shapes, NO_DEFAULT)),
            Support(f"{module_name}.{qualname}", (qualname.split(".")[0],), module=module_name),
        )
    raise ArchTypeError(
        f"the .py output cannot write a {type(module).__name__} module as source yet", node.span
    )


def importable(obj: Any) -> tuple[str, str] | None:
    """``(module, qualified name)`` when ``obj`` is what ``from module import ...`` gives
    (then attribute access along the qualified name); None for lambdas, local functions,
    anything defined in ``__main__`` or not found under its name.

    The module is looked up among those already imported (the function exists, so its
    module ran), never imported: archdsl imports nothing by name.
    """
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return None
    if module_name == "__main__" or "<" in qualname:
        return None
    target: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return (module_name, qualname) if target is obj else None


def is_default(arg: str, value: Any, default: Any, args: Sequence[tuple[str, Any, Any]]) -> bool:
    """Whether an argument may be left out of the call."""
    if arg == "stride" and default is None and args[0][0] == "kernel_size":
        return bool(value == args[0][1])  # pooling: stride None means the kernel size
    return default is not NO_DEFAULT and type(value) is type(default) and value == default


def _read(module: nn.Module, name: str, default: Any) -> Any:
    if name == "bias" and isinstance(default, bool):  # stored as a tensor or None
        value: Any = getattr(module, "bias", None) is not None
    else:
        value = getattr(module, name)
    if name == "normalized_shape" and len(value) == 1:
        value = value[0]
    if name == "scale_factor" and value is not None:  # nn.Upsample stores 2 as 2.0
        value = tuple(int(v) for v in value) if isinstance(value, tuple) else int(value)
    return _compact(value)


def _compact(value: Any) -> Any:
    """``(3, 3) -> 3``: how a person writes a square kernel, stride or padding."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, tuple) and value and all(v == value[0] for v in value[1:]):
        if isinstance(value[0], int):
            return value[0]
    return value


_ClassSpec = tuple[str, tuple[str, ...], tuple[tuple[str, Any], ...], Support | None]
_CLASS_SPECS: dict[Callable[..., Any], _ClassSpec] = {}


def _class_spec(cls: Callable[..., Any], positional: int | None = None) -> _ClassSpec:
    """(call name, positional arguments, (keyword, default) pairs, support) of a class, or
    of a factory function with ``positional`` leading arguments written positionally."""
    if cls not in _CLASS_SPECS:
        _CLASS_SPECS[cls] = _new_class_spec(cls, positional)
    return _CLASS_SPECS[cls]


def _new_class_spec(cls: Callable[..., Any], positional_count: int | None) -> _ClassSpec:
    params = [
        p
        for p in inspect.signature(cls).parameters.values()
        if p.name not in _SKIPPED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    n = POSITIONAL[cls] if positional_count is None else positional_count  # type: ignore[index]
    positional = tuple(p.name for p in params[:n])
    keywords = tuple((p.name, p.default) for p in params[n:])
    if cls.__module__.startswith("torch."):
        return f"nn.{cls.__name__}", positional, keywords, None
    if cls in _DEFINITIONS:
        module, names = _DEFINITIONS[cls]
        support = Support(cls.__qualname__, tuple(names), _definitions(module, names))
    else:
        source = textwrap.dedent(inspect.getsource(cls)).rstrip()
        support = Support(cls.__qualname__, (cls.__name__,), source)
    return cls.__name__, positional, keywords, support


def _definitions(module: ModuleType, names: Sequence[str]) -> str:
    """The source of the top-level definitions ``names`` of ``module``, in file order."""
    text = inspect.getsource(module)
    parts: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined = [node.name]
        elif isinstance(node, ast.Assign):
            defined = [t.id for t in node.targets if isinstance(t, ast.Name)]
        else:
            continue
        for name in defined:
            if name in names:
                segment = ast.get_source_segment(text, node)
                assert segment is not None
                parts[name] = segment
    missing = [n for n in names if n not in parts]
    if missing:  # pragma: no cover - a renamed definition: a bug caught by the tests
        raise RuntimeError(f"{module.__name__} has no top-level {missing}")
    return "\n\n\n".join(parts[n] for n in names)
