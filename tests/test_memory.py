"""archdsl.memory: the allocator keeps what a forward pass frees (keep_freed_memory), and
training recomputes chosen modules' activations instead of keeping them
(grad_checkpointing)."""

from __future__ import annotations

import copy
import doctest
import io
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl import memory
from archdsl.memory import grad_checkpointing, recomputed

# ---- keep_freed_memory: the allocator keeps what a forward pass frees -------------------

FAULTS = """
import resource, torch, archdsl

def faults_per_cycle():
    def cycle():  # 48 MB: over glibc's 32 MB ceiling, so mapped afresh each time by default
        torch.empty(12 * 2**20).fill_(1.0)
    for _ in range(10):  # glibc's heap settles after a few
        cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        cycle()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3

print(faults_per_cycle(), archdsl.keep_freed_memory(), faults_per_cycle())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_stops_page_faults_from_freed_activations() -> None:
    # process-wide and for good: in a process of its own
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    before, kept, after = out.stdout.split()
    assert kept == "True"
    assert int(after) < 100  # the block is reused: no page is handed out again
    # by default each cycle faults in all 12,288 pages (fewer where every block is a huge page)
    huge_pages = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not (huge_pages.exists() and "[always]" in huge_pages.read_text()):
        assert int(before) > 10_000


def test_keep_freed_memory_does_nothing_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert memory.keep_freed_memory() is False


# ---- grad_checkpointing: activations recomputed in the backward pass -------------------


def saved_bytes(net: torch.nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """What autograd keeps for the backward pass of ``net(x)``, in bytes, and the output."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x)
    return total, out


def grads(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net.zero_grad()
    (net(x) ** 2).mean().backward()
    return {k: p.grad.clone() for k, p in net.named_parameters()}


def test_doctest() -> None:
    assert doctest.testmod(memory).failed == 0


@pytest.mark.parametrize(
    ("name", "paths", "count"),
    [
        ("resnet18", ("layer*.*",), 8),
        ("densenet121", ("features.denseblock*.denselayer*",), 58),
        ("efficientnet_b0", ("features.[1-7].*",), 16),
    ],
)
def test_recomputed_modules_keep_less_and_give_the_same_gradients(name, paths, count) -> None:
    torch.manual_seed(0)
    net = archdsl.load(name, resolution=64, num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    keeps_in_eval, _ = saved_bytes(net.eval(), x)
    keeps, _ = saved_bytes(net.train(), x)
    torch.manual_seed(1)
    expected = grads(net, x)  # dropout and drop_path draw from the generator
    state = copy.deepcopy(net.state_dict())
    changed = grad_checkpointing(net, *paths)
    assert len(changed) == count
    kept, _ = saved_bytes(net, x)
    assert kept < keeps / 2, (kept, keeps)
    net.load_state_dict(state)  # the runs above moved the batch norms' running statistics
    torch.manual_seed(1)
    got = grads(net, x)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # eval mode, and no_grad, run the module itself: nothing to recompute
    net.eval()
    assert saved_bytes(net, x)[0] == keeps_in_eval
    assert list(net.state_dict()) == list(state)


def test_batch_norm_statistics_move_once() -> None:
    """The backward pass runs a recomputed block again; its batch norms' running
    statistics still move once, as without recomputation (the recomputation puts them
    back), where torchvision's memory-efficient DenseNet moves them twice."""
    torch.manual_seed(0)
    net = archdsl.load("resnet18", resolution=32, num_classes=10).train()
    plain = copy.deepcopy(net)
    grad_checkpointing(net, "layer*.*")
    x = torch.randn(4, 3, 32, 32)
    for _ in range(2):
        plain(x).sum().backward()
        net(x).sum().backward()
    want, got = plain.state_dict(), net.state_dict()
    assert int(got["layer1.0.bn1.num_batches_tracked"]) == 2
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    for key, param in plain.named_parameters():
        torch.testing.assert_close(net.get_parameter(key).grad, param.grad, msg=key)


def test_outermost_match_undo_and_copies() -> None:
    net = archdsl.load("resnet18", resolution=32, num_classes=10)
    # layer1 holds the other matches: it alone is recomputed; its layers are passed over
    assert grad_checkpointing(net, "layer1*", "layer1.0") == ["layer1"]
    assert recomputed(net.layer1) and not recomputed(net.get_submodule("layer1.0"))
    twin = copy.deepcopy(net)  # the copy recomputes its own module, not the original's
    assert recomputed(twin.layer1) and twin.layer1.forward.__self__ is twin.layer1
    assert grad_checkpointing(net, "*", enabled=False) == ["layer1"]
    assert "forward" not in net.layer1.__dict__ and recomputed(twin.layer1)
    assert grad_checkpointing(net, "layer2", enabled=False) == []
    # pickling (torch.save of the module) keeps it; the state_dict has the same keys
    grad_checkpointing(net, "layer2.*")
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert [n for n, m in loaded.named_modules() if recomputed(m)] == ["layer2.0", "layer2.1"]
    assert list(loaded.state_dict()) == list(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    loaded.train()(x).sum().backward()  # recomputes in its backward pass


def test_torch_compile_sees_the_recomputation() -> None:
    torch.manual_seed(0)
    net = archdsl.load("resnet18", resolution=64, num_classes=10).train()
    reference = copy.deepcopy(net)
    grad_checkpointing(net, "layer*.*")
    codes = []
    aot_eager = torch._dynamo.lookup_backend("aot_eager")  # autograd as inductor's, no codegen

    def backend(gm: torch.fx.GraphModule, inputs: list) -> object:
        codes.append(gm.code)  # dynamo's graph
        return aot_eager(gm, inputs)

    x = torch.randn(4, 3, 64, 64)
    expected = grads(reference, x)
    (torch.compile(net, backend=backend)(x) ** 2).mean().backward()
    # a region per block; torch 2.7 to 2.11 break the graph around each, and dynamo reuses
    # a twin block's compiled frame without showing the backend its graph again
    regions = sum(code.count("tag_activation_checkpoint(") for code in codes)
    assert regions == 8 if len(codes) == 1 else 1 <= regions <= 8
    for key, value in expected.items():
        torch.testing.assert_close(
            net.get_parameter(key).grad, value, rtol=1e-5, atol=1e-6, msg=key
        )


def test_a_path_that_matches_nothing_names_what_is_there() -> None:
    net = archdsl.load("resnet18", resolution=32, num_classes=10)
    with pytest.raises(ValueError, match=r"no module at 'layr\*\.\*'; .*: layer1\.0, layer1\.1"):
        grad_checkpointing(net, "layr*.*")
    with pytest.raises(
        ValueError,
        match=r"'layer1\.0\.conv\*' names single layers \(layer1\.0\.conv1, layer1\.0\.conv2\)",
    ):
        grad_checkpointing(net, "layer1.0.conv*")
    assert not any(recomputed(m) for m in net.modules())
