"""The rules in order, and the function that applies them."""

from __future__ import annotations

import copy

from torch import fx, nn

from archdsl.optimize.concat_chains import concat_chains_in_place
from archdsl.optimize.eval_mode import drop_side_outputs, freeze, remove_identities
from archdsl.optimize.fold_batch_norm import fold_batch_norm
from archdsl.optimize.fold_layer_scale import fold_layer_scale
from archdsl.optimize.graphs import Rule
from archdsl.optimize.inline_scopes import inline_scopes
from archdsl.optimize.layout import channels_last
from archdsl.optimize.merge_convs import merge_sibling_convs
from archdsl.optimize.pooled_convs import pooled_convs_as_sums

RULES: tuple[Rule, ...] = (
    freeze,
    drop_side_outputs,
    remove_identities,
    fold_batch_norm,
    fold_layer_scale,
    channels_last,
)

COMPILE_RULES: tuple[Rule, ...] = (
    *RULES,
    inline_scopes,
    pooled_convs_as_sums,
    merge_sibling_convs,
    concat_chains_in_place,
)
"""What :func:`compile_for_inference` applies: :data:`RULES`, then rewrites that pay off
once inductor compiles the network, not in eager mode."""


def optimize_for_inference(
    module: nn.Module, *, rules: tuple[Rule, ...] = RULES, inplace: bool = False
) -> nn.Module:
    """A copy of a compiled network rewritten for fast inference (see the module doc).

    Only for inputs of 4 dimensions (images), in eval mode. ``inplace=True`` rewrites
    ``module`` itself instead of a copy. A module archdsl did not build (a torchvision
    model, the class of an emitted ``.py``) is traced with ``torch.fx`` first, so the rules
    see its graph; one that cannot be traced is refused. Use the module returned, also with
    ``inplace=True``: a traced module is a new one, sharing its layers with ``module``.
    """
    graph = getattr(module, "archdsl_graph", None)
    if not inplace:
        module = copy.deepcopy(module)
        if graph is not None:  # GraphModule's deepcopy keeps only its own attributes
            module.archdsl_graph = graph
    if not isinstance(module, fx.GraphModule):
        module = _traced(module)
    for rule in rules:
        module = rule(module)
    return module


def _traced(module: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(module)
    except Exception as e:  # torch.fx raises whatever the forward raises on a Proxy
        raise TypeError(
            f"optimize_for_inference rewrites a module's torch.fx graph, and "
            f"{type(module).__name__} cannot be traced ({type(e).__name__}: {e}); the "
            "modules archdsl builds always can"
        ) from e
