"""Inference rewrites of a compiled network: each exact, each one function over the
``torch.fx`` graphs of the module tree, listed in :data:`RULES` and applied in that order.

An optimised module is for inference only: it is in eval mode, its parameters do not
require grad, batch norms and layer scales are folded into the layers before them (so its
state_dict has fewer keys than the network's) and training-only side outputs are gone. Its outputs equal the original
module's in eval mode up to float rounding (folding reorders a few multiplications).

>>> import torch, archdsl
>>> net = archdsl.compile("network t { input [3, 8, 8]; c: conv(4, 3) -> b: bn -> relu }")
>>> fast = optimize_for_inference(net)
>>> [name for name, _ in fast.named_children()]
['c', '2']
>>> x = torch.randn(2, 3, 8, 8)
>>> torch.allclose(fast(x), net.eval()(x), atol=1e-6)
True
"""

from archdsl.optimize.compiled import FROZEN_COMPILE, CompiledForInference, compile_for_inference
from archdsl.optimize.concat_chains import concat_chains_in_place
from archdsl.optimize.eval_mode import drop_side_outputs, freeze, remove_identities
from archdsl.optimize.fold_batch_norm import fold_batch_norm
from archdsl.optimize.fold_layer_scale import fold_layer_scale
from archdsl.optimize.graphs import ELEMENTWISE, Rule, graph_modules
from archdsl.optimize.inline_scopes import inline_scopes
from archdsl.optimize.layout import channels_last, default_layout
from archdsl.optimize.merge_convs import merge_sibling_convs
from archdsl.optimize.optimizer import COMPILE_RULES, RULES, optimize_for_inference
from archdsl.optimize.pooled_convs import PooledConv2d, pooled_convs_as_sums

__all__ = [
    "COMPILE_RULES",
    "ELEMENTWISE",
    "FROZEN_COMPILE",
    "RULES",
    "CompiledForInference",
    "PooledConv2d",
    "Rule",
    "channels_last",
    "compile_for_inference",
    "concat_chains_in_place",
    "default_layout",
    "drop_side_outputs",
    "fold_batch_norm",
    "fold_layer_scale",
    "freeze",
    "graph_modules",
    "inline_scopes",
    "merge_sibling_convs",
    "optimize_for_inference",
    "pooled_convs_as_sums",
    "remove_identities",
]
