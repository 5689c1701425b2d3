"""The ``drop_path`` op (stochastic depth) and its torch module.

Semantics are torchvision.ops.StochasticDepth's: the identity in eval mode or with
``p == 0``; in training, whole samples (``mode="row"``) or the whole batch
(``mode="batch"``) are zeroed with probability ``p`` and the survivors scaled by
``1 / (1 - p)``, so the expected output is the input.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archdsl
from archdsl.backends.torch_modules import StochasticDepth, build_module
from archdsl.errors import ArchTypeError
from archdsl.ops import OPS, bind_defaults, normalize_attrs

ROWS = 20_000  # samples per statistics check: the binomial std of the drop rate is < 0.0035
RATE_TOLERANCE = 0.015  # > 4 standard deviations


def drop_path(p: float, mode: str = "row") -> nn.Module:
    """The module the backend builds for ``drop_path(p, mode=mode)``."""
    return build_module("drop_path", {"p": p, "mode": mode}, [(4, 3, 3)])


def test_op_declaration() -> None:
    opdef = OPS["drop_path"]
    assert opdef.stateless and opdef.arity == 1
    assert normalize_attrs(opdef, bind_defaults(opdef, {})) == {"p": 0.0, "mode": "row"}
    for shape in [(4, 3, 3), (10,), (2, 5)]:
        assert opdef.infer({"p": 0.5, "mode": "row"}, [shape]) == shape
    assert opdef.count_params({"p": 0.5, "mode": "row"}, [(4, 3, 3)]) == 0
    module = drop_path(0.25, "batch")
    assert isinstance(module, StochasticDepth)
    assert (module.p, module.mode) == (0.25, "batch")
    assert repr(module) == "StochasticDepth(p=0.25, mode=batch)"
    assert not list(module.parameters()) and not list(module.buffers())


def test_eval_is_identity() -> None:
    x = torch.randn(8, 4, 3, 3)
    module = drop_path(0.9).eval()
    assert module(x) is x


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_p_zero_is_identity_in_training(mode: str) -> None:
    x = torch.randn(8, 4, 3, 3)
    assert drop_path(0.0, mode).train()(x) is x


def test_p_one_drops_everything() -> None:
    x = torch.randn(8, 4, 3, 3)
    out = drop_path(1.0).train()(x)
    assert out.shape == x.shape and torch.count_nonzero(out) == 0


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_row_mode_statistics(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(ROWS, 2, 3, 3)
    out = drop_path(p, "row").train()(x)
    flat = out.flatten(1)
    dropped = (flat == 0).all(dim=1)
    kept = (flat == 1 / (1 - p)).all(dim=1)
    assert bool((dropped | kept).all()), "each sample is dropped whole or kept whole"
    assert abs(dropped.double().mean().item() - p) < RATE_TOLERANCE
    assert abs(out.double().mean().item() - 1.0) < RATE_TOLERANCE / (1 - p)  # mean preserved


def test_batch_mode_drops_all_or_none() -> None:
    torch.manual_seed(0)
    p, trials = 0.3, 4000
    module = drop_path(p, "batch").train()
    x = torch.ones(4, 2, 3)
    outcomes = []
    for _ in range(trials):
        out = module(x)
        assert bool((out == 0).all()) or bool((out == 1 / (1 - p)).all())
        outcomes.append(bool((out == 0).all()))
    assert abs(sum(outcomes) / trials - p) < 0.03  # binomial std 0.0072


def test_noise_is_drawn_as_torchvision_draws_it() -> None:
    # torchvision: one bernoulli_(1 - p) of shape [N, 1, 1, 1] ("row") or [1, 1, 1, 1]
    # ("batch"), divided by 1 - p; so the same seed drops the same samples.
    x = torch.randn(16, 4, 3, 3, dtype=torch.float64)
    for mode, size in (("row", [16, 1, 1, 1]), ("batch", [1, 1, 1, 1])):
        torch.manual_seed(1)
        got = drop_path(0.4, mode).train()(x)
        torch.manual_seed(1)
        noise = torch.empty(size, dtype=x.dtype).bernoulli_(0.6).div_(0.6)
        assert torch.equal(got, x * noise)


def test_gradient_is_the_mask() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 5, requires_grad=True)
    out = drop_path(0.5).train()(x)
    out.sum().backward()
    assert x.grad is not None
    scale = out.detach() / x.detach()
    assert torch.allclose(x.grad, scale)


SPEC = """
block residual(p) {
  add { identity; (conv(in.c, 3, padding=1) -> stochastic_depth: drop_path(p)) }
}
network net(p = 0.2, mode = "row") {
  input [4, 8, 8]
  residual(p) -> drop_path(p, mode=mode)
}
"""


def test_in_a_spec() -> None:
    graph = archdsl.check(SPEC)
    assert graph.output_shape == (4, 8, 8)
    model = archdsl.build(graph)
    drops = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert [(m.p, m.mode) for m in drops] == [(0.2, "row"), (0.2, "row")]
    assert all("stochastic_depth" not in key for key in model.state_dict())
    x = torch.randn(3, 4, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    # p = 1 drops the residual branch: the block passes its input through unchanged
    always = archdsl.build(archdsl.check(SPEC, p=1.0)).train()
    with torch.no_grad():
        assert torch.equal(always.get_submodule("0")(x), x)
        assert torch.count_nonzero(always(x)) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("1.5", "drop_path: p must be a number between 0 and 1, got 1.5"),
        ("-0.1", "drop_path: p must be a number between 0 and 1, got -0.1"),
        ('0.1, mode="column"', 'drop_path: mode must be one of "row", "batch", got "column"'),
    ],
)
def test_bad_arguments_point_at_the_argument(args: str, message: str) -> None:
    source = f"network net {{\n  input [4, 8, 8]\n  drop_path({args})\n}}\n"
    with pytest.raises(ArchTypeError) as info:
        archdsl.check(source)
    assert info.value.message == message
    assert info.value.span.line == 3
