"""What archdsl emits and rewrites, against what it builds, on networks no one wrote.

The bundled specs are written with care (every layer labelled as torchvision names it);
the generator in ``specgen.py`` writes the networks a user might: numbered layers inside
classes whose widths differ between instances, unlabelled ``seq``s, blocks inside blocks.
Two emitted-file bugs hid there (a parameter named ``1_out_channels``, a ``class 5``).
Each case is a fixed seed, so a failure names a spec that can be printed and replayed:
``python -c "import random, specgen; print(specgen.spec(random.Random(SEED)))"`` in tests/.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from archdsl import optimize
from archdsl.ir import Graph
from emitted import import_source, run_both
from reference import fill
from specgen import spec

SEEDS = range(24)


def checked(seed: int) -> Graph:
    try:
        return archdsl.check(spec(random.Random(seed)))
    except archdsl.ArchError as e:  # a label drawn twice: the generator's, not ours
        pytest.skip(f"seed {seed} draws a spec that does not check: {str(e).splitlines()[0]}")


def emitted(graph: Graph, path: Path) -> nn.Module:
    module = import_source(archdsl.emit_python(graph), path)
    (name,) = module.__all__
    return getattr(module, name)()  # type: ignore[no-any-return]


def assert_same(got: object, want: object) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def relative_error(got: object, want: object) -> float:
    """The largest error relative to the largest value, over every output (a network that
    returns stages beside its logits returns a tuple)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        return max(relative_error(g, w) for g, w in zip(got, want))
    assert isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("seed", SEEDS)
def test_the_py_output_is_the_network(seed: int, tmp_path: Path) -> None:
    """The emitted file imports, takes the built module's weights strictly and computes
    what it computes, in eval and in training mode (same seed: same dropout masks)."""
    graph = checked(seed)
    net = fill(archdsl.build(graph))
    copy = emitted(graph, tmp_path / f"generated_{seed}.py")
    copy.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(seed))
    for training in (False, True):  # the same seed: the same dropout masks
        want, got = run_both(net, copy, x, training)
        assert_same(got, want)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_inference_rewrites_keep_the_network(seed: int) -> None:
    """optimize_for_inference, with its default rules and with those compile_for_inference
    uses, computes what the network computes, within 1e-4 relative."""
    graph = checked(seed)
    net = fill(archdsl.build(graph)).eval()
    x = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = net(x)
        for rules in (optimize.RULES, optimize.COMPILE_RULES):
            got = archdsl.optimize_for_inference(net, rules=rules)(x)
            assert relative_error(got, want) < 1e-4


@pytest.mark.slow  # inductor compiles C++: about 6 s a network
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_compile_for_inference_keeps_the_network(seed: int) -> None:
    """The fastest path (the compile rules, then inductor with frozen weights) computes
    what the network computes, within 1e-4 relative."""
    graph = checked(seed)
    net = fill(archdsl.build(graph)).eval()
    x = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = net(x)
        got = archdsl.compile_for_inference(net)(x)
    assert relative_error(got, want) < 1e-4


@pytest.mark.slow  # torch.export and the ONNX exporter: about 2 s a network
@pytest.mark.parametrize("seed", SEEDS[:6])
def test_the_exports_are_the_network(seed: int, tmp_path: Path) -> None:
    """The .pt2 program and the .onnx file (run by onnxruntime) compute what the network
    computes."""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    graph = checked(seed)
    net = fill(archdsl.build(graph)).eval()
    x = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = net(x)
    archdsl.export(net, tmp_path / "net.pt2")
    torch.testing.assert_close(torch.export.load(tmp_path / "net.pt2").module()(x), want)
    archdsl.export(net, tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    wanted = tuple(want) if isinstance(want, tuple) else (want,)  # several outputs: in order
    assert len(got) == len(wanted)
    for g, w in zip(got, wanted):
        # onnxruntime's float32 kernels round differently: within 1e-4 of the largest value
        # (an element near zero may differ by more than 1e-4 of itself)
        assert torch.from_numpy(g).shape == w.shape
        assert relative_error(torch.from_numpy(g), w) < 1e-4


def test_the_generator_writes_specs_that_check() -> None:
    import doctest

    import specgen

    assert doctest.testmod(specgen).failed == 0
    checks = 0
    for seed in SEEDS:
        try:
            archdsl.check(spec(random.Random(seed)))
            checks += 1
        except archdsl.ArchError:
            pass
    assert checks >= len(SEEDS) * 3 // 4  # else the cases above mostly skip
