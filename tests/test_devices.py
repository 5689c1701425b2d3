"""What a user does on an accelerator, run on every device there is: the CPU always, CUDA
when present (the GPU run in bench/README.md; CI has none). Mixed precision through every
merge, channels_last, inference rewrites, a mixed-precision training step, weights loaded
onto the device and torch.compile, each against the same network in fp32 on that device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from reference import fill

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]

# residual add with a projection, concat, squeeze-excitation mul, dropout and a side output
NET = """
block se(c) {
  mul { identity; (global_avgpool -> fc1: conv(max(1, c // 4), 1) -> relu -> fc2: conv(c, 1) -> sigmoid) }
}
block unit(c, stride = 1) {
  add {
    (conv1: conv(c, 3, stride=stride, padding=1, bias=false) -> bn1: bn -> relu
     -> conv2: conv(c, 3, padding=1, bias=false) -> bn2: bn -> se: se(c))
    if stride != 1 or in.c != c { downsample: seq { conv(c, 1, stride=stride, bias=false); bn } }
  }
  -> relu
}
network n(num_classes = 5) {
  input [3, 32, 32]
  stem: conv(16, 3, padding=1, bias=false) -> bn -> relu
  -> b1: unit(16) -> b2: unit(32, stride=2)
  -> side aux: seq { global_avgpool(flatten=true); linear(num_classes) }
  -> mix: concat { conv(8, 1); (avgpool(3, stride=1, padding=1) -> conv(8, 1)) }
  -> global_avgpool(flatten=true) -> dropout(0.2) -> fc: linear(num_classes)
}
"""

AUTOCAST = {  # dtype -> largest relative error (norm) against fp32
    torch.bfloat16: 2e-2,  # measured on CPU: 3e-3
    torch.float16: 5e-3,  # 4e-4
}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@contextlib.contextmanager
def exact_math() -> Iterator[None]:
    """fp32 convolutions and matrix products in full precision on CUDA (TF32 rounds their
    inputs to 10 bits, so comparisons at 1e-4 fail for reasons of the hardware)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def network(device: torch.device) -> nn.Module:
    """NET with realistic batch-norm statistics (the reference fill), on ``device``."""
    return fill(archdsl.compile(NET)).to(device).eval()


def inputs(device: torch.device, batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("dtype", list(AUTOCAST), ids=str)
def test_autocast_through_every_merge(device: torch.device, dtype: torch.dtype) -> None:
    model, x = network(device), inputs(device)
    with torch.no_grad(), exact_math():
        expected = model(x)
        with torch.autocast(device.type, dtype=dtype):
            got = model(x)
            # channels_last under autocast, as a GPU user runs it
            last = model.to(memory_format=torch.channels_last)(
                x.to(memory_format=torch.channels_last)
            )
    assert got.device.type == device.type and got.shape == expected.shape
    assert torch.isfinite(got).all()
    assert relative(got, expected) < AUTOCAST[dtype]
    assert relative(last, got) < AUTOCAST[dtype]


def test_channels_last_and_optimised_equal_fp32(device: torch.device) -> None:
    model, x = network(device), inputs(device)
    with torch.no_grad(), exact_math():
        expected = model(x)
        fast = archdsl.optimize_for_inference(model)
        assert fast.get_submodule("stem").weight.is_contiguous(memory_format=torch.channels_last)
        assert relative(fast(x), expected) < 1e-4
        assert fast.get_submodule("stem").weight.device.type == device.type


def test_training_step_in_mixed_precision(device: torch.device) -> None:
    model = network(device).train()
    x, target = inputs(device), torch.tensor([0, 1, 2, 3], device=device)
    stats = model.get_submodule("b1.bn1").running_mean.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(x)
        loss = nn.functional.cross_entropy(out.out, target) + 0.3 * nn.functional.cross_entropy(
            out.aux, target
        )
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    before = model.get_submodule("fc").weight.detach().clone()
    opt.step()
    assert not torch.equal(model.get_submodule("fc").weight, before)
    assert not torch.equal(model.get_submodule("b1.bn1").running_mean, stats)


def test_weights_load_onto_the_device(device: torch.device, tmp_path: Path) -> None:
    source = network(torch.device("cpu"))
    path = tmp_path / "n.pt"
    torch.save(source.state_dict(), path)
    spec = tmp_path / "n.arch"
    spec.write_text(NET)
    loaded = archdsl.compile_file(spec, weights=path, device=device).eval()
    assert {p.device.type for p in loaded.state_dict().values()} == {device.type}
    with torch.no_grad(), exact_math():
        torch.testing.assert_close(
            loaded(inputs(device)).cpu(), source(inputs(torch.device("cpu"))), rtol=1e-4, atol=1e-5
        )


@pytest.mark.slow  # inductor compiles the network: about 10 s on two cores
def test_torch_compile_on_the_device(device: torch.device) -> None:
    model, x = network(device), inputs(device)
    torch._dynamo.reset()
    compiled = torch.compile(model)
    with torch.no_grad(), exact_math():
        assert relative(compiled(x), model(x)) < 1e-4
