"""Names a label cannot take: Python keywords and attributes of torch.fx.GraphModule
(forward, training, state_dict ...), which a submodule of that name would
shadow or break. Kept as data so the checker needs no torch; a test compares it with
torch's own list.
"""

RESERVED_LABELS: frozenset[str] = frozenset({
    "training", "shape_env", "archdsl_graph",
    "False", "None", "T_destination", "True", "add_module", "add_submodule", "and", "apply",
    "as", "assert", "async", "await", "bfloat16", "break", "buffers", "call_super_init",
    "children", "class", "code", "compile", "continue", "cpu", "cuda", "def", "del",
    "delete_all_unused_submodules", "delete_submodule", "double", "dump_patches", "elif",
    "else", "eval", "except", "extra_repr", "finally", "float", "for", "forward", "from",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "global", "graph",
    "half", "if", "import", "in", "ipu", "is", "lambda", "load_state_dict", "meta", "modules",
    "mtia", "named_buffers", "named_children", "named_modules", "named_parameters", "nonlocal",
    "not", "or", "parameters", "pass", "print_readable", "raise", "recompile",
    "register_backward_hook", "register_buffer", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "return",
    "self", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty",
    "to_folder", "train", "try", "type", "while", "with", "xpu", "yield", "zero_grad",
})  # fmt: skip
