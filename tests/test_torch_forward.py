"""What a compiled network's forward computes: in-place ReLUs and residual sums, merges
and side outputs.

The backend overwrites a tensor in place (``ReLU(inplace=True)``, ``+=``, as torchvision
does) only where nothing else reads it, and must give the same outputs, gradients and
state_dict as without; train and eval modes differ where they should, and the same seed
builds the same network and code. Tiny inline specs pin down ``add``, ``concat`` and ``mul``
with known weights; side outputs appear in training mode only, named and ordered by
``outputs(...)``.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import fx, nn

import archdsl
from torchnets import MIXED, RESNET_1111, SIDE, TINY, fresh, graph_modules

# MBConv's tail: x + drop_path(block(x)), SiLU and ReLU6 after batch norm.
MBCONV_TAIL = """
network m {
  input [3, 8, 8]
  conv(8, 3, padding=1) -> bn -> silu
  -> add { (); (conv(8, 1) -> bn -> relu6 -> conv(8, 1) -> bn -> dropout(0.5) -> drop_path(0.5)) }
  -> global_avgpool -> flatten -> linear(3)
}
"""


# ---- in-place ReLU and residual sums -----------------------------------------------------------


def _in_place(src: str, outputs: tuple[str, ...] = ()) -> set[str]:
    """Module paths of the in-place ReLUs and ``op@scope`` of the in-place merges; with
    ``outputs``, module paths a backbone returns."""
    from archdsl.backends.torch_backend import _Layout, in_place

    graph = archdsl.check(src)
    ids = {n.path: n.id for n in graph.nodes()}
    found = in_place(graph, _Layout(graph), {path: ids[path] for path in outputs})
    return {graph.node(n).path or f"{graph.node(n).op}@{graph.node(n).scope}" for n in found}


def test_relu_and_residual_sum_overwrite_their_input_as_in_torchvision(resnet18):
    block = resnet18.get_submodule("layer1.0")
    assert [m.inplace for m in block.modules() if isinstance(m, nn.ReLU)] == [True, True]
    assert "bn2 += x" in block.code
    assert "ReLU(inplace=True)" in repr(resnet18)


DECODER = """
network decoder {
  input [3, 8, 8]
  conv(6, 3, stride=2, padding=1) -> relu
  -> concat { (); (conv(6, 3, stride=2, padding=1) -> relu -> conv_transpose(6, 2, stride=2)
                   -> relu) }
  -> upsample(2, mode="bilinear") -> relu -> conv(2, 1)
}
"""


@pytest.mark.parametrize("src", [MIXED, RESNET_1111, MBCONV_TAIL, DECODER])
def test_in_place_gives_the_same_outputs_gradients_and_state_dict(src, x64):
    from archdsl.backends.torch_backend import build

    graph = archdsl.check(src)
    torch.manual_seed(0)
    plain = build(graph, inplace=False).train()
    fast = build(graph).train()
    assert list(fast.state_dict()) == list(plain.state_dict())
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, *graph.input_shape)
    for model in (plain, fast):
        torch.manual_seed(1)  # dropout draws the same masks
        model(x).square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        assert torch.equal(p.grad, q.grad), name
    torch.manual_seed(1)
    expected = plain(x)
    torch.manual_seed(1)
    assert torch.equal(fast(x), expected)
    assert torch.equal(fast.eval()(x), plain.eval()(x))


def test_in_place_only_where_nothing_else_reads_the_input():
    assert _in_place(
        "network n { input [4, 6, 6]; c: conv(4, 1) -> r1: relu -> r2: relu"  # relu: not its output
        " -> add { (c2: conv(4, 1) -> r3: relu -> c3: conv(4, 1)); identity }"  # c3 into the sum
        " -> r4: relu }"  # the sum, read by r4 alone
    ) == {"r1", "r3", "r4", "add@"}
    # the conv's output also feeds the identity branch: neither the relu nor the sum
    assert _in_place("network n { input [4]; linear(4) -> add { relu; identity } }") == set()
    # a flatten's output is a view of its input
    assert _in_place("network n { input [4, 2, 2]; bn -> flatten -> f: relu }") == set()
    # an identity's output is its input: overwritten where that input could be
    assert _in_place("network n { input [4]; linear(4) -> identity -> r: relu }") == {"r"}
    assert _in_place("network n { input [4]; relu -> identity -> r: relu }") == set()
    assert (
        _in_place(
            "network n { input [4]; l: linear(4) -> add { (identity -> r: relu); identity } }"
        )
        == set()
    )
    # a sum of two overwrites the second where the first cannot be (MBConv: x + branch)
    assert _in_place("network n { input [4]; relu -> add { (); linear(4) } -> r: relu }") == {
        "add@",
        "r",
    }
    assert _in_place(
        "network n { input [4]; relu -> add { (); linear(4); linear(4) } -> r: relu }"
    ) == {"r"}
    # the activations with an inplace flag, through dropout and drop path (MBConv's tail)
    assert _in_place(
        "network n { input [4, 3, 3]; bn -> s: silu -> conv(4, 1) -> r6: relu6 -> dropout(0.1)"
        " -> bn -> drop_path(0.2) -> h: hardswish -> sigmoid -> g: gelu }"
    ) == {"s", "r6", "h"}
    # a transposed convolution's backward, and an upsampling's, never read their output
    assert _in_place(
        "network n { input [4, 3, 3]; conv_transpose(4, 2, stride=2) -> a: relu"
        ' -> upsample(2, mode="bilinear") -> b: relu -> conv(4, 1) }'
    ) == {"a", "b"}
    # not the network's input, nor its output, nor a backbone's
    assert _in_place("network n { input [4]; relu }") == set()
    assert _in_place("network n { input [4]; l: linear(4) -> relu }", outputs=("l",)) == set()


def test_in_place_stops_at_scope_boundaries():
    # never a block's input, which comes from its caller, who may read it again
    # (`model.k(x)`); nor what a block returns, which a forward hook on it may keep
    src = "block b { r1: relu -> conv(4, 1) }\nnetwork n { input [4, 3, 3]; conv(4, 1) -> k: b -> r2: relu }"
    assert _in_place(src) == set()
    src = "block b { identity }\nnetwork n { input [4, 3, 3]; conv(4, 1) -> k: b -> r: relu }"
    assert _in_place(src) == set()


def test_train_and_eval_differ_for_dropout_and_batchnorm():
    model = fresh(MIXED)
    x = torch.randn(4, 3, 20, 20)
    model.train()
    with torch.no_grad():
        t1, t2 = model(x), model(x)
    assert not torch.equal(t1, t2)  # dropout draws new masks
    model.eval()
    with torch.no_grad():
        e1, e2 = model(x), model(x)
    assert torch.equal(e1, e2)
    assert not torch.allclose(e1, t1)
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_train_and_eval_differ_for_batchnorm_only():
    model = fresh(TINY)
    x = torch.randn(4, 3, 16, 16) * 3 + 1
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    assert not torch.allclose(train_out, eval_out)
    assert model.get_submodule("1").num_batches_tracked.item() == 1


def test_identical_seed_gives_identical_state_dicts():
    a = fresh(MIXED, seed=3).state_dict()
    b = fresh(MIXED, seed=3).state_dict()
    c = fresh(MIXED, seed=4).state_dict()
    assert list(a) == list(b) == list(c)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert not torch.equal(a["stem.0.weight"], c["stem.0.weight"])


def test_identical_seed_gives_identical_resnet18():
    torch.manual_seed(7)
    a = archdsl.load("resnet18").state_dict()
    torch.manual_seed(7)
    b = archdsl.load("resnet18").state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generated_code_identical_across_compilations():
    one = dict(graph_modules(archdsl.load("resnet18")))
    two = dict(graph_modules(archdsl.load("resnet18")))
    assert list(one) == list(two)
    for name in one:
        assert one[name].code == two[name].code, name
    m1, m2 = dict(graph_modules(fresh(MIXED))), dict(graph_modules(fresh(MIXED)))
    assert list(m1) == list(m2)
    assert all(m1[n].code == m2[n].code for n in m1)


# ---- merges --------------------------------------------------------------------------


def _known_conv(model: nn.Module, path: str) -> nn.Conv2d:
    conv = model.get_submodule(path)
    with torch.no_grad():
        conv.weight.copy_(
            torch.arange(conv.weight.numel(), dtype=torch.float32).view_as(conv.weight)
        )
    return conv


def _expected_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], x)


def test_concat_follows_branch_order():
    x = torch.randn(2, 2, 3, 3)
    first = fresh("network c { input [2, 3, 3]; concat { identity; k: conv(3, 1, bias=false) } }")
    conv = _known_conv(first, "k")
    out = first(x)
    assert out.shape == (2, 5, 3, 3)
    assert torch.equal(out[:, :2], x)
    torch.testing.assert_close(out[:, 2:], _expected_conv(x, conv))

    second = fresh("network c { input [2, 3, 3]; concat { k: conv(3, 1, bias=false); identity } }")
    conv = _known_conv(second, "k")
    out = second(x)
    torch.testing.assert_close(out[:, :3], _expected_conv(x, conv))
    assert torch.equal(out[:, 3:], x)


def test_concat_of_three_branches_in_a_block():
    src = """
    block tri() {
      concat { a: conv(1, 1, bias=false); identity; b: conv(2, 1, bias=false) }
    }
    network c { input [2, 3, 3]; t: tri() }
    """
    model = fresh(src)
    a, b = _known_conv(model, "t.a"), _known_conv(model, "t.b")
    with torch.no_grad():
        a.weight.neg_()
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        out = model(x)
    expected = torch.cat([_expected_conv(x, a), x, _expected_conv(x, b)], 1)
    torch.testing.assert_close(out, expected)
    assert "torch.cat" in model.t.code


def test_add_sums_all_branches():
    model = fresh(
        "network a { input [2, 3, 3]; add { identity; k: conv(2, 1, bias=false); identity } }"
    )
    conv = _known_conv(model, "k")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), 2 * x + _expected_conv(x, conv))


def test_empty_if_branch_is_identity():
    model = fresh(
        "network a { input [2, 3, 3]; add { k: conv(2, 1, bias=false); if false { relu } } }"
    )
    conv = _known_conv(model, "k")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x + _expected_conv(x, conv))


SE = """
network se(c = 6) {
  input [6, 5, 5]
  mul { identity; (global_avgpool -> fc: conv(c, 1) -> sigmoid) }
}
"""


@pytest.mark.parametrize("gate_first", [False, True])
def test_mul_broadcasts_squeeze_excitation_gate(gate_first):
    src = SE
    if gate_first:
        src = src.replace(
            "identity; (global_avgpool -> fc: conv(c, 1) -> sigmoid)",
            "(global_avgpool -> fc: conv(c, 1) -> sigmoid); identity",
        )
    graph = archdsl.check(src)
    assert graph.output_shape == (6, 5, 5)
    model = fresh(src)
    x = torch.randn(3, 6, 5, 5)
    fc = model.fc
    gate = torch.sigmoid(nn.functional.conv2d(x.mean((2, 3), keepdim=True), fc.weight, fc.bias))
    assert gate.shape == (3, 6, 1, 1)
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x * gate)


def test_mul_of_three_branches():
    model = fresh(
        "network m { input [2, 3, 3]; mul { identity; identity; k: conv(2, 1, bias=false) } }"
    )
    conv = _known_conv(model, "k")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x * x * _expected_conv(x, conv))


MERGE_OF_ONE_TENSOR = (
    "network n {{ input [2, 3, 3]; {kind} {{ if false {{ relu }}; if false {{ relu }} }} }}"
)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("add", lambda x: x + x),
        ("concat", lambda x: torch.cat([x, x], 1)),
        ("mul", lambda x: x * x),
    ],
)
def test_merge_of_the_same_tensor_twice(kind, expected):
    graph = archdsl.check(MERGE_OF_ONE_TENSOR.format(kind=kind))
    (merge,) = [n for n in graph.nodes() if n.op == kind]
    assert len(graph.inputs(merge.id)) == 2
    x = torch.randn(2, 2, 3, 3)
    out = archdsl.build(graph)(x)
    assert tuple(out.shape[1:]) == graph.output_shape
    assert torch.equal(out, expected(x))


def test_concat_keeps_repeated_branch_positions():
    src = (
        "network n { input [2, 3, 3]; relu -> concat { if false { relu }; k: conv(1, 1); "
        "if false { relu } } }"
    )
    graph = archdsl.check(src)
    assert graph.output_shape == (5, 3, 3)
    model = archdsl.build(graph)
    x = torch.randn(2, 2, 3, 3)
    r = torch.relu(x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([r, model.k(r), r], 1))


def test_scope_holding_only_a_merge():
    model = fresh("network n { input [2, 3, 3]; m: add { identity; identity } -> relu }")
    assert isinstance(model.m, fx.GraphModule)
    x = torch.randn(2, 2, 3, 3)
    torch.testing.assert_close(model.m(x), 2 * x)
    torch.testing.assert_close(model(x), torch.relu(2 * x))


# ---- side outputs ------------------------------------------------------------------------


def test_side_outputs_in_training_mode_only():
    model = fresh(SIDE)
    assert "aux.1.weight" in model.state_dict()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = model.train()(x)
        assert isinstance(out, tuple) and len(out) == 2
        assert out[0] is out.out and out[1] is out.aux
        assert out.out.shape == (2, 3) and out.aux.shape == (2, 2)
        # the side branch is the head applied to the stem's output
        stem = torch.relu(model.stem(x))
        torch.testing.assert_close(out.aux, model.aux(stem))
        plain = model.eval()(x)
    assert isinstance(plain, torch.Tensor) and not isinstance(plain, tuple)
    torch.testing.assert_close(plain, out.out)
    ep = torch.export.export(model, (x,))
    torch.testing.assert_close(ep.module()(x), plain)


NAMED_OUTPUTS = """
network named {
  input [3, 8, 8]
  outputs(logits=out, late, early_head=early)
  stem: conv(4, 3, padding=1) -> relu
  -> side early: (global_avgpool(flatten=true) -> linear(2))
  -> conv(4, 1) -> relu
  -> side late: (global_avgpool(flatten=true) -> linear(5))
  -> global_avgpool(flatten=true) -> fc: linear(3)
}
"""


def test_outputs_statement_leaves_out_side_outputs_not_made() -> None:
    """A field for a side output under an if that was false is left out; with none made,
    training mode returns the main output alone. A field naming no side output the body
    writes is still an error."""
    src = NAMED_OUTPUTS.replace("network named {", "network named(early = true, late = true) {")
    src = src.replace(
        "-> side early: (global_avgpool(flatten=true) -> linear(2))",
        "-> if early { side early: (global_avgpool(flatten=true) -> linear(2)) }",
    )
    src = src.replace(
        "-> side late: (global_avgpool(flatten=true) -> linear(5))",
        "-> if late { side late: (global_avgpool(flatten=true) -> linear(5)) }",
    )
    x = torch.randn(2, 3, 8, 8)
    assert fresh(src).train()(x)._fields == ("logits", "late", "early_head")
    assert fresh(src, early=False).train()(x)._fields == ("logits", "late")
    out = fresh(src, early=False, late=False).train()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    with pytest.raises(archdsl.ArchNameError, match="no output named 'lates'"):
        archdsl.check(src.replace("outputs(logits=out, late,", "outputs(logits=out, lates,"))


def test_outputs_statement_names_and_orders_training_outputs(tmp_path):
    model = fresh(NAMED_OUTPUTS)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = model.train()(x)
        assert out.names == ("logits", "late", "early_head")
        assert [t.shape[1] for t in out] == [3, 5, 2]  # fc, late, early: the fields' order
        assert out[0] is out.logits and out[1] is out.late and out[2] is out.early_head
        torch.testing.assert_close(out.early_head, model.early(torch.relu(model.stem(x))))
        assert not hasattr(out, "out") and not hasattr(out, "early")
        assert list(out._asdict()) == list(out.names) and out._asdict()["late"] is out.late
        # a namedtuple, as torchvision's GoogLeNetOutputs: torch's pytree and DataParallel's
        # gather (type(out)._make) rebuild it with its fields
        assert out._fields == out.names
        leaves, spec = torch.utils._pytree.tree_flatten(out)
        assert len(leaves) == 3 and leaves[1] is out.late
        rebuilt = torch.utils._pytree.tree_unflatten(leaves, spec)
        assert type(rebuilt) is type(out) and rebuilt.early_head is out.early_head
        assert type(out)._make(iter(out)).late is out.late
        for copied in (pickle.loads(pickle.dumps(out)), copy.deepcopy(out), copy.copy(out)):
            assert type(copied) is type(out) and copied.names == out.names
            assert torch.equal(copied.early_head, out.early_head)
        assert repr(out).startswith("Outputs(logits=tensor(") and ", early_head=tensor(" in repr(
            out
        )
        plain = model.eval()(x)
        torch.testing.assert_close(plain, out.logits)
        path = tmp_path / "named.pt"
        torch.save(model, path)
        loaded = torch.load(path, weights_only=False).train()
        assert loaded(x).names == out.names
        torch.testing.assert_close(loaded(x).early_head, out.early_head)
        # optimised for inference: the main output alone, whatever field names it
        fast = archdsl.optimize_for_inference(fresh(NAMED_OUTPUTS).eval())
        assert fast(x).shape == (2, 3) and not hasattr(fast, "early")
