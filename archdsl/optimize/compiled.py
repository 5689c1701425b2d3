"""The fastest CPU path: the optimised network compiled by inductor with frozen weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from archdsl.optimize.optimizer import COMPILE_RULES, optimize_for_inference

FROZEN_COMPILE = {"freezing": True, "cpp_wrapper": True}
"""Inductor's settings for the fastest CPU path: the weights become constants (the
convolutions' weights prepacked for oneDNN, their ReLU and residual sum fused) and C++,
not Python, calls the kernels. ``torch.compile(options=...)`` does not freeze in torch 2.13:
the settings must be in inductor's config when a call compiles."""


class CompiledForInference(nn.Module):
    """An optimised network compiled with inductor freezing; calls run under
    ``torch.no_grad()``, and those that may compile (a first call, or inputs of a shape,
    stride, dtype or device not seen before, or a global state such as autocast not seen
    with them) also under :data:`FROZEN_COMPILE`, so that every compilation freezes
    (outside those settings it would compile without freezing, 10 to 15% slower, and
    silently). Setting them costs 37 us, so calls like earlier ones skip it.

    ``module`` is the optimised network as it was when a call compiled (from
    :func:`compile_for_inference`, one graph, some convolutions merged, so its state_dict
    is not the network's): its weights are
    constants of the compiled code and its mode is eval, so later changes to either are not
    seen. Dynamo therefore guards only what can change the compiled code, the inputs and
    the global state (grad mode, autocast, threads), not the module's attributes
    (torch's ``keep_portable_guards_unsafe``): under 1 us a call where all guards took
    26 us (resnet50) to 154 us (densenet121). With a torch that lacks the filter (before
    2.11) all guards are checked, and a module changed after compiling compiles again: each
    call then runs under inductor's settings, so that compiling freezes too.
    """

    compiled: Callable[..., Any]  # set in __init__, past nn.Module's registration

    def __init__(self, module: nn.Module, options: dict[str, bool]):
        super().__init__()
        self.module = module
        self.options = options
        # inputs' signatures compiled for -> dynamo's global states they compiled under
        self.seen: dict[tuple, list[Any]] = {}
        portable = getattr(torch.compiler, "keep_portable_guards_unsafe", None)
        guards = {"guard_filter_fn": portable} if portable else None
        self.may_recompile = portable is None  # on a change of the module's attributes
        # not a submodule: its state is module's, and its state_dict would repeat it
        object.__setattr__(self, "compiled", torch.compile(module, dynamic=False, options=guards))

    def forward(self, *args: torch.Tensor) -> Any:  # a tensor, or a backbone's dict
        import torch._inductor.config as inductor_config
        from torch._C._dynamo.guards import GlobalStateGuard

        key = tuple((a.shape, a.stride(), a.dtype, a.device) for a in args)
        with torch.no_grad():
            states = self.seen.setdefault(key, [])
            known = any(state.check() for state in states)
            if known and not self.may_recompile:
                return self.compiled(*args)
            with inductor_config.patch(self.options):
                out = self.compiled(*args)
            if not known:
                states.append(GlobalStateGuard())
            return out


def compile_for_inference(module: nn.Module, *, cpp_wrapper: bool = True) -> nn.Module:
    """The fastest CPU path archdsl offers: :func:`optimize_for_inference` with
    :data:`COMPILE_RULES` (its rules, then the network inlined into one graph, pooled
    convolutions as sums, sibling convolutions merged and chains of concatenations written
    into one tensor), then ``torch.compile`` with inductor freezing (and ``cpp_wrapper``)
    at every input shape.
    Compiling happens at the first call with each shape (a minute or more for a large
    network on two cores); each shape compiles once, up to dynamo's recompile limit (8).
    Outputs equal the module's in eval mode up to float rounding. On Linux,
    :func:`archdsl.keep_freed_memory` spares each call the page faults of activations
    glibc would otherwise hand back to the OS (docs/performance.md).
    """
    optimised = optimize_for_inference(module, rules=COMPILE_RULES)
    return CompiledForInference(optimised, {**FROZEN_COMPILE, "cpp_wrapper": cpp_wrapper})
