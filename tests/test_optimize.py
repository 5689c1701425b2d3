"""``archdsl.optimize_for_inference``: each rule of :mod:`archdsl.optimize` alone, then the
whole pipeline against the unoptimised network (within 1e-4 relative), on networks with
realistic batch-norm statistics (the reference fill rule, not PyTorch's identity init).
"""

from __future__ import annotations

import copy
import doctest
import importlib
import io
import pkgutil

import pytest
import torch
from torch import fx, nn

import archdsl
from archdsl import optimize
from archdsl.optimize import concat_chains
from reference import fill

RES = 64
REL = 1e-4


def relative_error(a: torch.Tensor | tuple, b: torch.Tensor | tuple) -> float:
    """Over every output of a network that returns several (a pyramid's levels)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        return max(relative_error(x, y) for x, y in zip(a, b))
    return float((a - b).abs().max() / a.abs().max())


def leaf_types(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if not isinstance(m, fx.GraphModule)}


RULE_MODULES = [
    importlib.import_module(f"archdsl.optimize.{info.name}")
    for info in pkgutil.iter_modules(optimize.__path__)
]


@pytest.mark.parametrize("module", [optimize, *RULE_MODULES], ids=lambda m: m.__name__)
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0


def test_every_rule_carries_a_runnable_example() -> None:
    """STYLE.md: each rule's docstring carries an example the suite runs."""
    for rule in {*optimize.COMPILE_RULES, optimize.default_layout}:
        examples = doctest.DocTestFinder().find(rule, globs={})
        assert examples and examples[0].examples, rule.__name__


def test_rules_are_listed_in_order() -> None:
    assert [r.__name__ for r in optimize.RULES] == [
        "freeze",
        "drop_side_outputs",
        "remove_identities",
        "fold_batch_norm",
        "fold_layer_scale",
        "channels_last",
    ]
    assert optimize.COMPILE_RULES == (
        *optimize.RULES,
        optimize.inline_scopes,
        optimize.pooled_convs_as_sums,
        optimize.merge_sibling_convs,
        optimize.concat_chains_in_place,
    )


def test_fold_needs_a_single_user() -> None:
    """A conv whose output also feeds a merge cannot absorb the bn: the merge needs the
    unnormalised value."""
    net = archdsl.compile("""
network t {
  input [3, 8, 8]
  c: conv(4, 3, padding=1) -> add { (b: bn -> relu); () }
}
""")
    fill(net)
    folded = optimize.fold_batch_norm(net.eval())
    assert nn.BatchNorm2d in leaf_types(folded)


def test_fold_linear_and_batchnorm1d() -> None:
    net = archdsl.compile("network t { input [6]; fc: linear(5) -> b: bn -> relu }")
    fill(net)
    x = torch.randn(4, 6)
    expected = net.eval()(x)
    folded = optimize.fold_batch_norm(net)
    assert nn.BatchNorm1d not in leaf_types(folded)
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("bias", ["true", "false"])
def test_fold_transposed_conv_and_batchnorm(groups: int, bias: str) -> None:
    """A transposed convolution's weight is [in, out / groups, kh, kw]: each group scales
    its own columns (torch's fuse_conv_bn_eval(transpose=True) refuses groups > 1)."""
    net = archdsl.compile(f"""network t {{
      input [8, 5, 5]
      c: conv_transpose(12, 3, stride=2, groups={groups}, bias={bias}) -> b: bn -> relu
    }}""")
    fill(net)
    x = torch.randn(2, 8, 5, 5)
    expected = net.eval()(x)
    folded = optimize.fold_batch_norm(net)
    assert nn.BatchNorm2d not in leaf_types(folded)
    assert folded.c.bias is not None
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-6)


def test_optimised_copy_leaves_the_network_alone() -> None:
    net = archdsl.load("resnet18")
    keys = list(net.state_dict())
    fast = archdsl.optimize_for_inference(net)
    assert net.training and list(net.state_dict()) == keys
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    assert fast.archdsl_graph is net.archdsl_graph
    assert nn.BatchNorm2d not in leaf_types(fast)
    for m in fast.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.is_contiguous(memory_format=torch.channels_last)
    assert ".contiguous(memory_format = torch.channels_last)" in fast.code
    same = archdsl.optimize_for_inference(net, inplace=True)
    assert same is net and not net.training


def test_side_outputs_and_eval_identities_go() -> None:
    net = archdsl.compile("""
network t {
  input [3, 16, 16]
  stem: conv(8, 3) -> bn -> relu
  -> side aux: (global_avgpool(flatten=true) -> dropout(0.5) -> linear(2))
  -> concat { identity; conv(8, 1) }
  -> global_avgpool(flatten=true) -> dropout(0.2) -> fc: linear(3)
}
""")
    fast = archdsl.optimize_for_inference(net)
    assert "aux" not in dict(fast.named_children())
    assert not {nn.Dropout, nn.Identity} & leaf_types(fast)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net.eval()(x), rtol=1e-5, atol=1e-6)


def filled(name: str) -> nn.Module:
    """A bundled network with the reference fill, built without the (slower) random init."""
    net = archdsl.build(archdsl.load_graph(name), device="meta").to_empty(device="cpu")
    return fill(net)


OPTIMISED = [
    "resnet50",
    pytest.param("googlenet", marks=pytest.mark.slow),
    pytest.param("vgg16_bn", marks=pytest.mark.slow),  # 138M parameters to fill
    pytest.param("densenet121", marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", marks=pytest.mark.slow),
]


class _Unit(nn.Module):  # a hand-written module: no torch.fx graph of its own
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))) + 1


def test_a_module_archdsl_did_not_build_is_traced_then_optimised() -> None:
    net = nn.Sequential(_Unit(), nn.Dropout(0.5), nn.Conv2d(8, 4, 1)).eval()
    fill(net)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = archdsl.optimize_for_inference(net)
        assert relative_error(net(x), fast(x)) < REL
    assert nn.BatchNorm2d not in leaf_types(fast) and nn.Dropout not in leaf_types(fast)
    assert nn.BatchNorm2d in leaf_types(net)  # a copy: the module itself is untouched


def test_the_class_of_an_emitted_py_file_is_optimised_like_the_network() -> None:
    namespace: dict = {}
    exec(archdsl.emit_python(archdsl.load_graph("resnet18")), namespace)
    plain = namespace["Resnet18"]().eval()
    fill(plain)
    x = torch.randn(1, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = archdsl.optimize_for_inference(plain)
        assert relative_error(plain(x), fast(x)) < REL
    assert nn.BatchNorm2d not in leaf_types(fast)


def test_a_module_torch_fx_cannot_trace_is_refused() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(TypeError, match="Branchy cannot be traced .*archdsl builds always can"):
        archdsl.optimize_for_inference(Branchy())


@pytest.mark.parametrize("name", OPTIMISED)
def test_optimised_outputs_equal_the_network(name: str) -> None:
    if name not in archdsl.list_specs():
        pytest.skip(f"no bundled spec {name}")
    net = filled(name).eval()
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
        fast = archdsl.optimize_for_inference(net, inplace=True)
        got = fast(x)
    assert relative_error(expected, got) < REL
    if name != "densenet121":  # pre-activation: its batch norms follow a concat or a relu
        assert nn.BatchNorm2d not in leaf_types(fast)


@pytest.mark.parametrize(
    ("name", "rewritten"),
    # googlenet: one merge per inception block (9); efficientnet_b0: the two
    # squeeze-and-excitation convolutions of each of its 16 MBConv blocks; densenet121:
    # its four dense blocks, each written into one tensor
    [("googlenet", 9), ("efficientnet_b0", 32), ("densenet121", 4)],
)
def test_compile_rules_keep_the_outputs(name: str, rewritten: int) -> None:
    """What :func:`archdsl.compile_for_inference` compiles, run eagerly, against the
    network."""
    net = filled(name).eval()
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
        fast = archdsl.optimize_for_inference(net, rules=optimize.COMPILE_RULES)
        got = fast(x)
    changed = [
        n
        for n, m in fast.named_modules()
        if type(m) is optimize.PooledConv2d or n.rpartition(".")[2].startswith("merged")
    ]
    buffers = [n for n in fast.graph.nodes if n.target is concat_chains._channel_buffer]
    assert len(changed) + len(buffers) == rewritten
    assert not any(n.target is torch.cat for n in fast.graph.nodes) or name != "densenet121"
    assert relative_error(expected, got) < REL


IMAGE_SPECS = [n for n in archdsl.list_specs() if len(archdsl.load_graph(n).input_shape) == 3]


@pytest.mark.slow  # every bundled image network built and run twice: 30 s on two cores
@pytest.mark.parametrize("name", IMAGE_SPECS)
def test_compile_rules_keep_every_bundled_network(name: str) -> None:
    """Each rule, old or new, on every bundled network (at its own resolution, a
    segmentation network at 128 x 128; PyTorch's initialisation): what :func:`archdsl.compile_for_inference` compiles, run eagerly, gives
    the network's output."""
    net = archdsl.load(name).eval()
    shape = net.archdsl_graph.input_shape
    if len(net.archdsl_graph.output_shape) == 3 and not net.archdsl_graph.returns_fields:
        shape = (shape[0], 128, 128)  # a segmentation map: any size runs, 520 takes seconds
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
        got = archdsl.optimize_for_inference(net, rules=optimize.COMPILE_RULES, inplace=True)(x)
    assert relative_error(expected, got) < REL


# ---- compile_for_inference: the fastest CPU path ----------------------------------------

RESIDUAL = """network t {
  input [3, 16, 16]
  conv(8, 3, padding=1, bias=false) -> bn -> relu
  -> add { (conv(8, 3, padding=1, bias=false) -> bn); () } -> relu
  -> global_avgpool(flatten=true) -> linear(5)
}"""


@pytest.mark.slow  # inductor compiles C++ three times: about 15 s
def test_compile_for_inference_freezes_at_every_input_shape() -> None:
    from torch._dynamo.utils import counters

    net = fill(archdsl.compile(RESIDUAL)).eval()
    fast = archdsl.compile_for_inference(net)
    optimised = archdsl.optimize_for_inference(net).state_dict()
    assert list(fast.state_dict()) == [f"module.{k}" for k in optimised]  # held once
    x2, x3 = (torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(n)) for n in (2, 3))
    nhwc = x2.to(memory_format=torch.channels_last)
    # a new shape, or new strides, compiles again and must freeze too; a repeat does not
    for x, compiles in ((x2, True), (x3, True), (x2, False), (nhwc, True)):
        counters.clear()
        got = fast(x)  # grad mode on: the call itself runs under no_grad
        # inductor's freezing prepacks the two convolutions' weights for oneDNN
        packed = counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"]
        assert packed == (2 if compiles else 0), (x.shape, x.stride())
        with torch.no_grad():
            assert relative_error(net(x), got) < REL
        assert got.grad_fn is None and torch.is_grad_enabled()
    assert not net.training and fast.module is not net  # the network itself is left alone


SQUEEZE_EXCITE = """network t {
  input [8, 6, 6]
  mul { (); (global_avgpool -> down: conv(4, 1) -> silu -> up: conv(8, 1) -> sigmoid) }
  -> after: conv(5, 1) -> side: conv(3, 1, stride=2)
  -> mul { (); (global_maxpool -> wide: conv(3, 3, padding=1) -> sigmoid) }
  -> global_avgpool -> head: conv(2, 1) -> flatten
}"""


def test_pooled_convs_become_sums_of_products() -> None:
    """Only the 1x1 convolutions of a globally pooled map change (``down``, ``up`` and
    ``head``); ``wide`` is 3x3 and ``after``, ``side`` see whole maps. The parameters and
    the state_dict stay, and the outputs are equal up to the order of the sums."""
    net = fill(archdsl.compile(SQUEEZE_EXCITE)).eval()
    x = torch.randn(3, 8, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        rewritten = optimize.pooled_convs_as_sums(net)
        got = rewritten(x)
    changed = {n for n, m in rewritten.named_modules() if type(m) is optimize.PooledConv2d}
    assert changed == {"down", "up", "head"}
    after = rewritten.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert relative_error(expected, got) < 1e-6


INCEPTION = """block unit(c, k=1) { conv(c, k, padding=k // 2) -> relu }
network t {
  input [6, 8, 8]
  concat {
    (one: unit(4));
    (reduce3: unit(3) -> three: unit(5, k=3));
    (reduce5: unit(2) -> five: unit(3, k=5));
    (pool: maxpool(3, stride=1, padding=1) -> proj: unit(2));
    (gate: conv(6, 1) -> sigmoid);
    (wide: unit(2, k=3))
  }
}"""


def test_sibling_convs_merge_across_scopes() -> None:
    """The three 1x1 convolutions of the block's input, each followed by a ReLU, become one
    of 9 filters; ``gate`` (a sigmoid after it), ``proj`` (another input) and ``wide``
    (3x3) stay apart. Outputs are equal channel for channel."""
    net = fill(archdsl.compile(INCEPTION)).eval()
    x = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
        flat = optimize.inline_scopes(copy.deepcopy(net))
        assert list(flat.state_dict()) == list(net.state_dict())
        merged = optimize.merge_sibling_convs(flat)
        got = merged(x)
    convs = {n: m for n, m in merged.named_modules() if isinstance(m, nn.Conv2d)}
    assert sorted(convs) == ["five.0", "gate", "merged0", "proj.0", "three.0", "wide.0"]
    stacked = torch.cat([net.get_submodule(f"{n}.0").weight for n in ("one", "reduce3", "reduce5")])
    assert torch.equal(convs["merged0"].weight, stacked)
    assert relative_error(expected, got) < 1e-6


DENSE = """block layer(g) { bn -> relu -> conv(g, 3, padding=1, bias=false) }
network t {
  input [4, 8, 8]
  stem: conv(6, 1)
  -> concat { (); l1: layer(3) }
  -> concat { (); l2: layer(3) }
  -> concat { (); l3: layer(2) }
  -> bn -> relu
  -> concat { (); pool: maxpool(3, stride=1, padding=1) }
  -> concat { (); l4: layer(3) }
}"""


def test_a_chain_of_concats_becomes_one_tensor_written_in_place() -> None:
    """The dense block's three concatenations become one tensor of 6 + 3 + 3 + 2 channels
    (counted from l1, l2 and l3's convolutions) and three writes into it; the last two
    concatenations are not a chain the rule can take (``pool``'s channels are not a
    convolution's), so they stay. The concatenations' values are copies either way; the
    batch norms reading them as views of the one tensor may round differently."""
    net = fill(archdsl.compile(DENSE)).eval()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
        flat = optimize.inline_scopes(copy.deepcopy(net))
        rewritten = optimize.concat_chains_in_place(flat)
        got = rewritten(x)
    calls = [(n.target, n.args) for n in rewritten.graph.nodes if n.op == "call_function"]
    buffers = [args for target, args in calls if target is concat_chains._channel_buffer]
    assert [args[2] for args in buffers] == [3 + 3 + 2]
    assert sum(target is concat_chains._append_channels for target, _ in calls) == 3
    assert sum(target is torch.cat for target, _ in calls) == 2
    assert list(rewritten.state_dict()) == list(net.state_dict())
    assert relative_error(expected, got) < 1e-6
    # unpickling traces the graph again: the helpers must stay calls, not be traced into
    saved = io.BytesIO()
    torch.save(rewritten, saved)
    saved.seek(0)
    loaded = torch.load(saved, weights_only=False)
    assert [n.target for n in loaded.graph.nodes] == [n.target for n in rewritten.graph.nodes]
    with torch.no_grad():
        assert torch.equal(loaded(x), got)


MERGED_PIECES = """block layer(g) { bn -> relu -> conv(g, 3, padding=1, bias=false) }
network t {
  input [4, 8, 8]
  stem: conv(6, 1)
  -> concat {
    (concat { (); (a: conv(3, 1) -> relu) } -> concat { (); l2: layer(3) });
    (b: conv(2, 1) -> relu)
  }
}"""


def test_a_chain_counts_the_channels_of_merged_convs() -> None:
    """``a`` and ``b`` read the stem, so they merge; their pieces of the chain are then
    slices of the merged convolution's output, counted from the slices (3 and 2), and the
    outer concatenation extends the inner two."""
    net = fill(archdsl.compile(MERGED_PIECES)).eval()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = net(x)
        flat = optimize.merge_sibling_convs(optimize.inline_scopes(copy.deepcopy(net)))
        rewritten = optimize.concat_chains_in_place(flat)
        got = rewritten(x)
    calls = [(n.target, n.args) for n in rewritten.graph.nodes if n.op == "call_function"]
    assert [args[2] for target, args in calls if target is concat_chains._channel_buffer] == [8]
    assert sum(target is concat_chains._append_channels for target, _ in calls) == 3
    assert relative_error(expected, got) < 1e-6


def test_a_chain_written_in_place_under_autocast() -> None:
    """The tensor takes the dtype ``cat`` would: under autocast the convolutions give
    bfloat16, and so does the rewritten block, with the same values."""
    net = fill(archdsl.compile(DENSE)).eval()
    rewritten = optimize.concat_chains_in_place(optimize.inline_scopes(copy.deepcopy(net)))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = net(x), rewritten(x)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert relative_error(expected.float(), got.float()) < 1e-2


def test_a_chain_whose_value_is_overwritten_stays() -> None:
    """A ReLU that runs in place on the concatenation would write into the shared tensor:
    the rule leaves that chain alone."""
    spec = DENSE.replace("-> bn -> relu\n", "-> relu\n")
    net = fill(archdsl.compile(spec)).eval()
    flat = optimize.inline_scopes(net)
    last = [n for n in flat.graph.nodes if n.target is torch.cat][2]  # l3's concatenation
    (relu,) = [u for u in last.users if u.op == "call_module"]
    assert flat.get_submodule(relu.target).inplace  # archdsl's choice, as torchvision's
    rewritten = optimize.concat_chains_in_place(flat)
    assert sum(n.target is torch.cat for n in rewritten.graph.nodes) == 5


@pytest.mark.slow  # inductor compiles C++ once: about 8 s
def test_compile_for_inference_of_a_dense_block() -> None:
    net = fill(archdsl.compile(DENSE)).eval()
    fast = archdsl.compile_for_inference(net)
    assert any(n.target is concat_chains._channel_buffer for n in fast.module.graph.nodes)
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert relative_error(net(x), fast(x)) < 1e-6


@pytest.mark.slow  # inductor compiles C++ twice: about 15 s
@pytest.mark.parametrize(
    ("spec", "shape", "packed"),
    [
        (SQUEEZE_EXCITE, (8, 6, 6), 3),  # after, side, wide: not down, up, head
        (INCEPTION, (6, 8, 8), 6),  # one conv for one, reduce3 and reduce5
    ],
    ids=["pooled", "siblings"],
)
def test_compile_for_inference_hands_onednn_fewer_convs(
    spec: str, shape: tuple[int, ...], packed: int
) -> None:
    """Inductor hands oneDNN the convolutions :data:`optimize.COMPILE_RULES` leave: pooled
    ones become loops of its own, siblings one call."""
    from torch._dynamo.utils import counters

    net = fill(archdsl.compile(spec)).eval()
    fast = archdsl.compile_for_inference(net)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    counters.clear()
    got = fast(x)
    assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] == packed
    with torch.no_grad():
        assert relative_error(net(x), got) < REL


@pytest.mark.slow  # inductor compiles C++ twice: about 12 s
@pytest.mark.skipif(
    not hasattr(torch.compiler, "keep_portable_guards_unsafe"),
    reason="this torch has no guard filter",
)
def test_compile_for_inference_is_a_snapshot_of_the_module() -> None:
    from torch._dynamo.utils import counters

    net = fill(archdsl.compile(RESIDUAL)).eval()
    fast = archdsl.compile_for_inference(net)
    x2, x3 = (torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(n)) for n in (2, 3))
    first = {2: fast(x2), 3: fast(x3)}
    # With all of dynamo's guards a new weight tensor would fail one, and the call would
    # compile again (unfrozen, reading it); guarded on inputs and global state alone, the
    # calls run the graphs frozen for their shapes and compile nothing.
    conv = next(m for m in fast.module.modules() if isinstance(m, nn.Conv2d))
    conv.weight = nn.Parameter(conv.weight.detach() * 2)
    counters.clear()
    for x in (x2, x3, x2, x3):
        assert torch.equal(fast(x), first[len(x)])
    assert counters["stats"]["unique_graphs"] == 0


@pytest.mark.slow  # inductor compiles C++ twice: about 12 s
def test_compile_for_inference_without_the_guard_filter_compiles_frozen_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A torch before 2.11 has no guard filter: a weight changed after compiling fails a
    guard and the call compiles again, and that compilation freezes too."""
    from torch._dynamo.utils import counters

    monkeypatch.delattr(torch.compiler, "keep_portable_guards_unsafe", raising=False)
    net = fill(archdsl.compile(RESIDUAL)).eval()
    fast = archdsl.compile_for_inference(net)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fast(x)
    conv = next(m for m in fast.module.modules() if isinstance(m, nn.Conv2d))
    conv.weight = nn.Parameter(conv.weight.detach() * 2)
    counters.clear()
    got = fast(x)
    assert counters["stats"]["unique_graphs"] == 1
    assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0
    with torch.no_grad():
        assert relative_error(fast.module(x), got) < REL
    assert len(fast.seen) == 1 and len(next(iter(fast.seen.values()))) == 1  # no growth


@pytest.mark.slow  # inductor compiles C++ twice: about 10 s
def test_compile_for_inference_respects_a_change_of_global_state() -> None:
    from torch._dynamo.utils import counters

    net = fill(archdsl.compile(RESIDUAL)).eval()
    fast = archdsl.compile_for_inference(net)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = fast(x)
    counters.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fast(x)  # a signature seen, but not under autocast: compiles, and freezes
    assert mixed.dtype == torch.bfloat16 and relative_error(plain, mixed.float()) < 0.05
    assert counters["stats"]["unique_graphs"] == 1
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # a CPU without AVX-512 packs no bf16
        assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0
    # back to float32: dynamo now holds graphs for two global states, which skipping its
    # guards would not tell apart; the call checks them and runs the first graph
    counters.clear()
    again = fast(x)
    assert again.dtype == torch.float32 and torch.equal(again, plain)
    assert counters["stats"]["unique_graphs"] == 0
