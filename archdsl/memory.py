"""Memory: the process's allocator, for fast CPU inference on Linux
(:func:`keep_freed_memory`), and what training keeps for the backward pass
(:func:`grad_checkpointing`).

glibc's ``malloc`` serves a large block (an activation at batch 8: tens of megabytes) with
``mmap`` when no free chunk of its heap is large enough, and hands it back to the OS when
it is freed; the next forward pass gets fresh pages, each a page fault and a zeroing on
first touch. Its threshold for mapping grows with the blocks freed, but never past 32 MB:
efficientnet_b0's widest activation at batch 8 (38.5 MB) costs its compiled network
9,409 faults a forward in a process that runs it alone. onnxruntime never pays this: it
keeps freed memory in an arena of its own. :func:`keep_freed_memory` makes glibc keep
it, for the whole process (docs/performance.md, "Memory the allocator gives back").
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
"""``mallopt``'s parameters, from glibc's ``<malloc.h>``."""

KEEP_AT_MOST = 2**31 - 1
"""Free memory at the top of the heap kept before glibc trims it (bytes): as good as all."""


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse instead of handing it back to the
    OS: no ``mmap`` for large blocks, no trimming of the heap. Tensors freed by one forward
    pass are then reused by the next without page faults, as onnxruntime's arena does.

    It is for the whole process and for the rest of its life, and the process's memory
    stays at its peak; values computed do not change. True where it took effect, False
    where the C library is not glibc (elsewhere there is nothing to do). Before Python
    starts, the environment does the same:
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.
    """
    import ctypes  # here, not at `import archdsl`: 5 ms of start-up with platform
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_AT_MOST) == 1


def recomputed_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """A module's ``forward`` that, in training mode with autograd recording, keeps none of
    the module's activations: the backward pass runs the module again to get them
    (``torch.utils.checkpoint``, non-reentrant, with the RNG state of the first run, so
    dropout draws the same masks). Elsewhere it is the module's own ``forward``. Bound to
    the module as its instance attribute ``forward`` (a method, as ``torch.compile``
    needs; named ``forward`` so that unpickling finds it)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    forward = type(self).forward.__get__(self)
    if not (self.training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    if torch.compiler.is_compiling():  # autograd's recomputation updates no buffer there
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    def run(*args: Any, **kwargs: Any) -> Any:
        if torch._C._current_graph_task_id() == -1:  # the forward pass
            return forward(*args, **kwargs)
        with _statistics_kept(self):  # the backward pass, running it again
            return forward(*args, **kwargs)

    return checkpoint(run, *args, use_reentrant=False, **kwargs)


recomputed_forward.__name__ = "forward"

_STATISTICS = frozenset({"running_mean", "running_var", "num_batches_tracked"})
"""The buffers a normalisation layer updates in training mode (batch norm's)."""


@contextlib.contextmanager
def _statistics_kept(module: Any) -> Iterator[None]:
    """Put back, after the block, the running statistics of the normalisation layers in
    ``module``: the recomputation in the backward pass must not update them a second time
    (the values it computes use the batch's own statistics, not these)."""
    import torch

    kept = [
        (b, b.clone())
        for m in module.modules()
        for name, b in m.named_buffers(recurse=False)
        if name in _STATISTICS
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in kept:
                buffer.copy_(value)


def recomputed(module: Any) -> bool:
    """Whether :func:`grad_checkpointing` set ``module`` to be recomputed."""
    return getattr(module.__dict__.get("forward"), "__func__", None) is recomputed_forward


def grad_checkpointing(module: Any, *paths: str, enabled: bool = True) -> list[str]:
    """Recompute in the backward pass, instead of keeping, the activations of the
    blocks and sequences at ``paths``: module paths as in the state_dict, with ``*``, ``?``
    and ``[...]`` wildcards (``"layer*.*"``: every block of a ResNet's stages;
    ``"features.denseblock*.denselayer*"``: every dense layer, as torchvision's
    ``memory_efficient=True`` DenseNet). Where a path matches a module inside another
    match, the outer one is taken, and single layers are passed over (recomputing one
    would keep as much as it saves). Training then holds only each recomputed module's input
    and output, and the backward pass runs the module's forward once more; gradients are
    the same, and so are batch norms' running statistics, updated once (torchvision's
    memory-efficient DenseNet updates them again as it recomputes). Eval mode, or calls under
    ``torch.no_grad()``, run as before; ``torch.compile`` recomputes as well. Copies and
    pickles keep the setting; the state_dict is unchanged. ``enabled=False`` undoes it for the
    modules at or under ``paths``.

    Returns the paths of the modules it changed. A path that matches no module is a
    ValueError naming the module paths there are at that depth, and so is one that
    matches single layers only.

    >>> import torch, archdsl
    >>> net = archdsl.load("resnet18", resolution=32, num_classes=10)
    >>> grad_checkpointing(net, "layer*.*")
    ['layer1.0', 'layer1.1', 'layer2.0', 'layer2.1', 'layer3.0', 'layer3.1', 'layer4.0', 'layer4.1']
    >>> net(torch.randn(2, 3, 32, 32)).sum().backward()
    """
    import fnmatch

    from archdsl.backends.fx_scopes import ScopeModule

    named = dict(module.named_modules())
    chosen: list[str] = []
    for pattern in paths:
        found = [name for name in named if fnmatch.fnmatchcase(name, pattern)]
        if not found:
            depth = pattern.count(".")
            there = sorted(
                {".".join(n.split(".")[: depth + 1]) for n in named if n.count(".") >= depth}
            )
            listed = ", ".join(there[:12]) + (", ..." if len(there) > 12 else "")
            raise ValueError(f"no module at {pattern!r}; module paths at that depth: {listed}")
        scopes = [name for name in found if isinstance(named[name], ScopeModule)]
        if enabled and not scopes:
            raise ValueError(
                f"{pattern!r} names single layers ({', '.join(found[:4])}"
                f"{', ...' if len(found) > 4 else ''}): recomputing one keeps as much as it "
                "saves; name the blocks or sequences around them"
            )
        chosen.extend(scopes)
    if not enabled:  # every recomputed module at or under the paths
        undone = [
            name
            for name, m in named.items()
            if recomputed(m) and any(_within(name, other) for other in chosen)
        ]
        for name in undone:
            del named[name].forward
        return undone
    outermost = [
        name
        for name in dict.fromkeys(chosen)
        if not any(_within(name, other) and name != other for other in chosen)
    ]
    for name in outermost:
        named[name].forward = types.MethodType(recomputed_forward, named[name])
    return outermost


def _within(name: str, outer: str) -> bool:
    """Whether module path ``name`` is ``outer`` or inside it ("" is the root)."""
    return name == outer or outer == "" or name.startswith(f"{outer}.")
