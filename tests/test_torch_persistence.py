"""Saving and copying a compiled network: state_dict and whole-model round trips, labels
that clash with Python names, CUDA, and the classes of the scope modules.

The backend makes its scope modules without torch.fx's per-scope costs (``fx_scopes``: one
class and ``forward`` shared by the scopes of one code, children read through the class).
They must still be what torch.fx makes from the same graph, and keep their classes through
deepcopy, pickling, ``torch.save``, TorchScript, :func:`archdsl.optimize_for_inference` and
a later ``recompile``.
"""

from __future__ import annotations

import copy
import pickle
import traceback

import pytest
import torch
from torch import fx, nn

import archdsl
from torchnets import MIXED, RESNET_1111, SIDE, TINY, fresh

# ---- persistence -------------------------------------------------------------------------


def test_state_dict_round_trip(tmp_path):
    model = fresh(MIXED, seed=1)
    with torch.no_grad():
        model(torch.randn(4, 3, 20, 20))  # move the batch-norm running statistics
    model.eval()
    path = tmp_path / "mixed.pt"
    torch.save(model.state_dict(), path)

    other = fresh(MIXED, seed=2).eval()
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert not torch.allclose(other(x), model(x))
    result = other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        assert torch.equal(other(x), model(x))


def test_resnet18_state_dict_round_trip(tmp_path, resnet18, x64):
    path = tmp_path / "r18.pt"
    torch.save(resnet18.state_dict(), path)
    torch.manual_seed(123)
    other = archdsl.load("resnet18", num_classes=10)
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    other.eval()
    with torch.no_grad():
        assert torch.equal(other(x64), resnet18(x64))


def test_load_state_dict_rejects_other_network():
    small = fresh(TINY)
    with pytest.raises(RuntimeError, match="size mismatch"):
        fresh(TINY, num_classes=7).load_state_dict(small.state_dict(), strict=True)


def test_whole_model_pickle_round_trip(tmp_path):
    model = fresh(MIXED).eval()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded.get_submodule("stage.0.downsample.0"), nn.Conv2d)


def test_whole_model_pickle_round_trip_with_side_outputs(tmp_path):
    model = fresh(SIDE)
    path = tmp_path / "side.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.train()(x).aux, model.train()(x).aux)
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


# ---- labels that clash with Python -------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "class",
        "lambda",
        "self",
        "forward",
        "graph",
        "code",
        "training",
        "float",
        "to",
        "eval",
        "type",
        "modules",
        "state_dict",
    ],
)
def test_label_that_clashes_with_python_names(label):
    src = f"network n {{ input [2, 4, 4]; {label}: conv(3, 1) -> relu }}"
    try:
        graph = archdsl.check(src)
    except archdsl.ArchError as e:
        assert (e.line, e.column) == (1, src.index(f"{label}:") + 1)
        return
    model = archdsl.build(graph)
    x = torch.randn(1, 2, 4, 4)
    conv = model.get_submodule(label)
    assert isinstance(conv, nn.Conv2d)
    model = model.float().to("cpu").eval()
    assert list(model.state_dict()) == [f"{label}.weight", f"{label}.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.relu(conv(x)))


# ---- CUDA ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(resnet18, x64):
    gpu = archdsl.load("resnet18", num_classes=10, device="cuda").eval()
    gpu.load_state_dict(resnet18.state_dict())
    assert all(p.is_cuda for p in gpu.parameters())
    moved = archdsl.load("resnet18", num_classes=10)
    moved.load_state_dict(resnet18.state_dict())
    moved = moved.cuda().eval()
    with torch.no_grad():
        ref = resnet18(x64)
        for model in (gpu, moved):
            out = model(x64.cuda())
            assert out.is_cuda
            torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-3)


def test_scopes_are_what_torch_fx_makes_from_the_same_graph():
    """The backend makes scope modules without torch.fx's per-scope compile and setattr
    costs (``fx_scopes.ScopeModule``: a shared class and ``forward`` for scopes of the same
    code, attributes set directly), setting what the installed torch's ``GraphModule.__init__``
    and ``recompile`` set. This compares each scope with the GraphModule torch.fx makes
    from the same graph, attribute for attribute, so a torch that sets more or otherwise
    fails here."""
    import copy

    from archdsl.backends.fx_scopes import is_child

    model = archdsl.build(archdsl.check(MIXED))
    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    kinds = {(type(m).forward, type(m).__name__) for m in scopes}
    assert len(kinds) == len({type(m) for m in scopes}) < len(scopes)  # one class per kind
    x = torch.randn(2, 3, 16, 16)
    for m in scopes:
        ref = fx.GraphModule(dict(m.named_children()), copy.deepcopy(m.graph), type(m).__name__)
        mine = {k: v for k, v in vars(m).items() if k != "archdsl_graph"}  # the root's, build's
        theirs = vars(ref)
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            if key == "_graph":
                assert value.owning_module is m and theirs[key].owning_module is ref
            elif key == "_modules":
                assert list(value.items()) == list(theirs[key].items())
            else:
                assert value == theirs[key], key
        cls, ref_cls = type(m), type(ref)
        # what the backend changes on purpose: a class attribute reading each child (which
        # TorchScript is told not to compile), and calls going straight to nn.Module.__call__
        children = {k for k, v in vars(cls).items() if is_child(v)}
        assert children == set(m._modules)
        assert set(cls.__jit_unused_properties__) == {
            *fx.GraphModule.__jit_unused_properties__,
            *children,
        }
        unused = {"__jit_unused_properties__"}
        assert vars(cls).keys() - unused - children == vars(ref_cls).keys() - {"__call__"}
        assert cls.__call__ is nn.Module.__call__ is not ref_cls.__call__
        assert cls.__name__ == ref_cls.__name__
        assert m._wrapped_call.cls is cls and ref._wrapped_call.cls is ref_cls
        assert cls.forward.__code__.co_code == ref_cls.forward.__code__.co_code
    model.eval()
    ref_root = fx.GraphModule(dict(model.named_children()), copy.deepcopy(model.graph))
    torch.testing.assert_close(model(x), ref_root(x))


def test_children_read_through_the_class_follow_later_changes():
    """Scopes read their children through a class attribute (faster than
    nn.Module.__getattr__); replacing, removing or re-registering a child is still seen."""
    model = archdsl.build(archdsl.check(MIXED)).eval()
    stem = model.stem
    first = stem.get_submodule("0")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        stem.add_module("0", nn.Identity())  # writes _modules directly
        assert isinstance(getattr(stem, "0"), nn.Identity)
        setattr(stem, "0", first)
        assert getattr(stem, "0") is first
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        delattr(stem, "0")
        assert not hasattr(stem, "0")
        setattr(stem, "0", "plain")  # a name that is no longer a child: a plain attribute
        assert getattr(stem, "0") == "plain" and "0" not in stem._modules
        delattr(stem, "0")
        assert not hasattr(stem, "0")
        with pytest.raises(AttributeError):
            delattr(stem, "0")
        stem.register_buffer("0", torch.ones(1))
        assert torch.equal(getattr(stem, "0"), torch.ones(1))


def test_an_error_in_a_scope_shows_its_generated_line():
    model = archdsl.build(archdsl.check(MIXED)).eval()
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(2, 5, 16, 16))  # 5 channels where the stem takes 3
    lines = traceback.format_tb(info.tb)
    assert any('getattr(self, "0")(x)' in line for line in lines), lines


def test_later_scopes_of_a_structure_make_their_fx_graph_when_asked():
    """A scope of the same structure as an earlier one takes its code at the build and
    copies its fx graph only when the graph is asked for, from a private copy of the first
    scope's graph: an edit of the first scope's graph afterwards does not leak into it."""
    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    lazy = [m for m in scopes if "_graph" not in vars(m)]
    assert len(lazy) >= 3  # layer2.0 .. layer4.0 are all like layer1.0... with a downsample
    firsts: dict[object, fx.GraphModule] = {}
    for m in scopes:
        if "_graph" in vars(m):
            firsts.setdefault(type(m).forward, m)
    pairs = [(m, firsts[type(m).forward]) for m in lazy]
    for first in {id(f): f for _, f in pairs}.values():
        placeholder = next(iter(first.graph.nodes))
        output = next(n for n in first.graph.nodes if n.op == "output")
        output.args = (placeholder,)  # the first scope, edited in place: now an identity
        first.graph.eliminate_dead_code()
        first.recompile()
    for m, first in pairs:
        assert m.graph.owning_module is m
        assert m.graph.python_code("self").src == m.code != first.code


def test_a_scope_made_like_another_copies_and_pickles():
    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    assert any("_graph" not in vars(m) for m in model.modules() if isinstance(m, fx.GraphModule))
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(copy.deepcopy(model)(x), expected, rtol=0, atol=0)
        model = archdsl.build(archdsl.check(RESNET_1111)).eval()
        model.load_state_dict(copy.deepcopy(model.state_dict()))
        again = pickle.loads(pickle.dumps(model))
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def _scope_classes(model: nn.Module) -> tuple[int, int, int]:
    """Scopes, their classes, and distinct (code, class name) pairs; and every scope reads
    its children through its class."""
    from archdsl.backends.fx_scopes import ScopeModule, is_child

    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    for m in scopes:
        assert isinstance(m, ScopeModule)
        assert {k for k, v in vars(type(m)).items() if is_child(v)} >= set(m._modules)
        assert "__call__" not in vars(type(m))
    return (
        len(scopes),
        len({type(m) for m in scopes}),
        len({(m.code, type(m).__name__) for m in scopes}),
    )


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save", "deepcopy, pickle"])
def test_copies_keep_the_classes_of_the_scopes(how: str) -> None:
    """A deepcopy (and so :func:`archdsl.optimize_for_inference`, which rewrites a copy) and
    an unpickled module keep each scope's class name, its children read through the class,
    one class for the scopes of one code and name, and the root's attributes: torch.fx
    makes a class per module, named "GraphModule" (and the extra class per scope costs 5%
    of a forward's time at batch 1), and its deepcopy keeps only what the graph uses."""
    import io

    def copied(model: nn.Module) -> nn.Module:
        for step in how.split(", "):
            if step == "deepcopy":
                model = copy.deepcopy(model)
            elif step == "pickle":
                model = pickle.loads(pickle.dumps(model))
            else:
                buffer = io.BytesIO()
                torch.save(model, buffer)
                buffer.seek(0)
                model = torch.load(buffer, weights_only=False)
        return model

    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    names = [type(m).__name__ for m in model.modules()]
    total, classes, distinct = _scope_classes(model)
    assert classes == distinct < total
    again = copied(model)
    assert [type(m).__name__ for m in again.modules()] == names
    assert _scope_classes(again) == (total, classes, distinct)
    assert again.archdsl_graph is not None and again.archdsl_graph.name == model.archdsl_graph.name
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
        fast = archdsl.optimize_for_inference(again)  # batch norm folded: every scope recompiled
        total, classes, distinct = _scope_classes(fast)
        assert classes == distinct < total
        assert type(fast).__name__ == type(model).__name__
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, deprecated in 2.13
def test_torchscript_compiles_a_network_its_copies_and_its_optimised_version() -> None:
    """TorchScript compiles a module's properties unless its class lists them as unused:
    the child properties are listed (TorchScript reads the children themselves), besides
    what torch.fx lists for GraphModule."""
    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    for module in (
        model,
        copy.deepcopy(model),
        pickle.loads(pickle.dumps(model)),
        archdsl.optimize_for_inference(model),
    ):
        scripted = torch.jit.script(module)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), module(x))


def test_a_copy_of_a_network_with_side_outputs_pickles() -> None:
    """Such a network pickles by rebuilding from its IR (torch.fx's re-tracing cannot see
    through the training-mode switch); its deepcopy keeps that and the IR."""
    model = fresh(SIDE)  # in training mode, where it returns the side outputs too
    again = pickle.loads(pickle.dumps(copy.deepcopy(model)))
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    with torch.no_grad():
        assert len(again(x)) == len(model(x)) == 2
        torch.testing.assert_close(again.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_a_scope_recompiled_after_the_build_changes_alone():
    """Scopes of the same code share a class and its ``forward``: an fx pass on one block
    moves it to a class of its own and leaves its twins as they were; recompiling without
    a change, or to the code another twin was given, shares a class again."""
    model = archdsl.build(archdsl.check(MIXED)).eval()
    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    first, twin = next(
        (a, b) for i, a in enumerate(scopes) for b in scopes[i + 1 :] if type(a) is type(b)
    )
    from archdsl.backends.fx_scopes import is_child

    shared, before = type(first), twin.code
    inputs: dict[str, torch.Tensor] = {}
    for name, scope in (("first", first), ("twin", twin)):
        scope.register_forward_pre_hook(lambda m, args, name=name: inputs.setdefault(name, args[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
        expected = {"first": first(inputs["first"]), "twin": twin(inputs["twin"])}
    twin.recompile()  # no change: stays
    assert type(twin) is shared and type(first) is shared

    def negate(scope: fx.GraphModule) -> None:
        out = next(n for n in scope.graph.nodes if n.op == "output")
        with scope.graph.inserting_before(out):
            neg = scope.graph.call_function(torch.neg, (out.args[0],))
        out.args = (neg,)
        scope.recompile()

    negate(first)
    assert "torch.neg" in first.code and twin.code == before
    assert type(twin) is shared is not type(first)
    assert type(first).forward is not shared.forward
    assert type(first).__name__ == shared.__name__
    assert {k for k, v in vars(type(first)).items() if is_child(v)} == set(first._modules)
    with torch.no_grad():
        torch.testing.assert_close(first(inputs["first"]), -expected["first"], rtol=0, atol=0)
        torch.testing.assert_close(twin(inputs["twin"]), expected["twin"], rtol=0, atol=0)
    negate(twin)
    assert type(twin) is type(first)  # the same edit, the same code: one class again
    with torch.no_grad():
        torch.testing.assert_close(twin(inputs["twin"]), -expected["twin"], rtol=0, atol=0)


def test_scopes_get_their_own_code_when_fx_records_profiler_metadata(monkeypatch):
    """With torch.fx's ``enrich_profiler_metadata`` on, ``recompile`` registers each
    module's own metadata, so no scope may take another's code; a torch without the
    setting (before 2.10) builds as with it off."""
    import types

    from torch.fx.experimental import _config as fx_config

    from archdsl.backends import torch_backend

    def forwards(model: nn.Module) -> tuple[int, int]:
        scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
        return len({type(m).forward for m in scopes}), len(scopes)

    shared, total = forwards(fresh(MIXED))
    assert shared < total
    if hasattr(fx_config, "enrich_profiler_metadata"):  # torch 2.10 and later
        with fx_config.patch(enrich_profiler_metadata=True):
            assert forwards(fresh(MIXED)) == (total, total)
    monkeypatch.setattr(torch_backend, "fx_experimental_config", types.SimpleNamespace())
    assert forwards(fresh(MIXED)) == (shared, total)
