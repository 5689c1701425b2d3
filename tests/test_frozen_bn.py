"""``bn(frozen=true)``: batch normalization with fixed statistics and affine, as detection
backbones fine-tune with (torchvision's FrozenBatchNorm2d). Checked against torch's own
eval-mode batch norm, ``F.batch_norm(training=False)``, in both modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from emitted import assert_every_output_computes
from reference import fill

SPEC = """
network t {
  input [4, 8, 8]
  conv1: conv(8, 3, padding=1, bias=false) -> bn1: bn(frozen=true) -> relu
  -> conv2: conv(8, 3, padding=1) -> bn2: bn(eps=1e-3, frozen=true)
}
"""


def _eval_bn(
    x: torch.Tensor, state: dict[str, torch.Tensor], name: str, eps: float
) -> torch.Tensor:
    return F.batch_norm(
        x,
        state[f"{name}.running_mean"],
        state[f"{name}.running_var"],
        state[f"{name}.weight"],
        state[f"{name}.bias"],
        training=False,
        eps=eps,
    )


def test_its_tensors_are_buffers_and_it_is_the_eval_batch_norm_in_both_modes() -> None:
    net = fill(archdsl.compile(SPEC)).double()
    state = net.state_dict()
    assert [k for k in state if k.startswith("bn1.")] == [
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    ]
    assert [n for n, _ in net.named_parameters()] == ["conv1.weight", "conv2.weight", "conv2.bias"]
    graph = net.archdsl_graph
    summary = archdsl.summary(graph)
    assert summary.params == sum(p.numel() for p in net.parameters())
    assert summary.buffers == 4 * 8 * 2
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    h = _eval_bn(F.conv2d(x, state["conv1.weight"], padding=1), state, "bn1", 1e-5)
    h = F.conv2d(F.relu(h), state["conv2.weight"], state["conv2.bias"], padding=1)
    want = _eval_bn(h, state, "bn2", 1e-3)
    for training in (True, False):  # frozen: training mode normalizes as eval mode does
        net.train(training)
        torch.testing.assert_close(net(x), want, rtol=1e-12, atol=1e-12)
    assert torch.equal(net.state_dict()["bn1.running_mean"], state["bn1.running_mean"])


def test_a_batch_norms_weights_load_its_count_dropped(tmp_path: Path) -> None:
    """ImageNet weights of a network with batch norm load into its frozen twin, as
    torchvision's detection backbones load a classifier's: ``num_batches_tracked`` is
    dropped, strictly, by ``load_state_dict`` and by ``weights=``."""
    trained = fill(archdsl.compile(SPEC.replace(", frozen=true", "").replace("frozen=true", "")))
    state = trained.state_dict()
    assert "bn1.num_batches_tracked" in state
    frozen = archdsl.compile(SPEC)
    frozen.load_state_dict(state, strict=True)
    path = tmp_path / "bn.pt"
    torch.save(state, path)
    loaded = archdsl.compile(SPEC, weights=path)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        want = trained.eval()(x)
        torch.testing.assert_close(frozen(x), want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loaded(x), want, rtol=1e-5, atol=1e-6)


def test_every_output_path_and_the_fold(tmp_path: Path) -> None:
    net = fill(archdsl.compile(SPEC))
    assert_every_output_computes(net, torch.randn(2, 4, 8, 8), tmp_path)
    folded = archdsl.optimize_for_inference(net)
    assert not [m for m in folded.modules() if type(m).__name__ == "FrozenBatchNorm2d"]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("bn(frozen=true, affine=false)", "a frozen batch norm keeps its affine"),
        ("flatten -> bn(frozen=true)", "bn"),
    ],
)
def test_a_frozen_batch_norm_needs_its_affine_and_a_feature_map(layer: str, message: str) -> None:
    with pytest.raises(archdsl.ArchError, match=message) as info:
        archdsl.check(f"network t {{\n  input [4, 8, 8]\n  conv(8, 1) -> {layer}\n}}")
    assert info.value.line == 3
