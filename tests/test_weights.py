"""Loading state_dict files: ``weights=`` (API) and ``--weights`` (CLI).

Strict, with a report of every kind of mismatch; built on the meta device, so no weight is
initialised (or even allocated) before the file's tensors take their places.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import archdsl
from archdsl.weights import (
    SAFETENSORS_DTYPES,
    WeightsError,
    compare,
    load_weights,
    read_state_dict,
    write_safetensors,
)
from archdsl_cli.main import main as cli

SPEC = """
network small(num_classes = 4) {
  input [3, 16, 16]
  stem: conv(8, 3, padding=1, bias=false) -> bn1: bn -> relu
  -> body: seq { conv(8, 3, padding=1); bn; relu }
  -> pool: global_avgpool(flatten=true) -> fc: linear(num_classes)
}
"""


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    net = archdsl.compile(SPEC)
    with torch.no_grad():  # distinct running statistics, so a wrong load would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net


@pytest.fixture()
def weights(net: nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "small.pth"
    torch.save(net.state_dict(), path)
    return path


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=0)


def test_load_round_trip(net: nn.Module, weights: Path) -> None:
    loaded = archdsl.compile(SPEC, weights=weights)
    assert_same_state(net, loaded)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), net.eval()(x), rtol=0, atol=0)
    net.train()
    assert loaded.archdsl_graph.name == "small"
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in loaded.parameters())


def test_loading_initialises_nothing(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules still call their init on construction, but on the meta device it touches no
    memory: no initialiser ever sees a real tensor."""
    for name in ("kaiming_uniform_", "uniform_", "normal_", "zeros_", "ones_"):
        original = getattr(nn.init, name)

        def only_meta(tensor: torch.Tensor, *args: object, _f=original, **kwargs: object):
            assert tensor.is_meta, "a real weight was initialised"
            return _f(tensor, *args, **kwargs)

        monkeypatch.setattr(nn.init, name, only_meta)
    loaded = archdsl.compile(SPEC, weights=weights)
    assert not any(t.is_meta for t in loaded.state_dict().values())


def test_training_does_not_write_to_the_file(weights: Path) -> None:
    before = weights.read_bytes()
    loaded = archdsl.compile(SPEC, weights=weights)
    opt = torch.optim.SGD(loaded.parameters(), lr=0.1)
    loaded(torch.randn(4, 3, 16, 16)).sum().backward()
    opt.step()
    assert weights.read_bytes() == before


def test_device_and_dtype(net: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, path
    )
    loaded = archdsl.compile(SPEC, weights=path, device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    torch.testing.assert_close(loaded.fc.weight, net.fc.weight, rtol=1e-3, atol=1e-3)


def test_checkpoint_wrappers_legacy_format_and_old_batchnorm_files(
    net: nn.Module, tmp_path: Path
) -> None:
    state = net.state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": state}, path)
    assert_same_state(net, archdsl.compile(SPEC, weights=path))
    legacy = tmp_path / "legacy.pt"  # the pre-zip format: cannot be memory-mapped
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert_same_state(net, archdsl.compile(SPEC, weights=legacy))
    old = tmp_path / "old.pt"  # saved before BatchNorm had num_batches_tracked
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    loaded = archdsl.compile(SPEC, weights=old)
    assert int(loaded.bn1.num_batches_tracked) == 0


def test_mismatch_report(net: nn.Module, tmp_path: Path) -> None:
    state = dict(net.state_dict())
    del state["stem.weight"], state["fc.bias"]
    state["fc.weight"] = torch.zeros(7, 8)
    state["head.weight"] = torch.zeros(1)
    for i in range(7):
        state[f"extra.{i}"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        archdsl.compile(SPEC, weights=path, path="small.arch")
    e = info.value
    assert isinstance(e, archdsl.ArchTypeError)
    assert (e.path, e.line) == ("small.arch", 2)  # the network's span
    assert e.missing == ["stem.weight", "fc.bias"]
    assert e.wrong_shape == [("fc.weight", (7, 8), (4, 8))]
    assert len(e.unexpected) == 8
    assert "(2 missing, 8 unexpected, 1 wrong-shape tensors)" in e.message
    text = e.render()
    assert "note: missing from the file: stem.weight, fc.bias" in text
    assert (
        "note: unexpected (not in the network): head.weight, extra.0, extra.1, extra.2, "
        "extra.3, ... (3 more)" in text
    )
    assert "note: wrong shape: fc.weight (file [7, 8], network [4, 8])" in text


def test_data_parallel_prefix_is_explained(net: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    with pytest.raises(WeightsError) as info:
        archdsl.compile(SPEC, weights=path)
    assert any("nn.DataParallel" in n for n in info.value.notes)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"not a checkpoint", "not a file torch.save wrote, nor a safetensors file"),
        ([1, 2, 3], "not a state_dict"),
    ],
)
def test_unreadable_files(content: object, message: str, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=message):
        archdsl.compile(SPEC, weights=path)


def test_a_pickled_object_is_named_with_what_to_do(tmp_path: Path) -> None:
    """A whole pickled module (or a checkpoint holding other objects) is refused by
    ``weights_only``; the message names the class and the fix, not torch's advice to unpickle
    with ``weights_only=False``."""
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(WeightsError) as info:
        archdsl.compile(SPEC, weights=path)
    message = info.value.message
    assert "holds an object of class torch.nn.modules.linear.Linear" in message
    assert "torch.save(model.state_dict(), path)" in message
    assert "weights_only" not in message and "\x1b" not in message


def test_a_folder_is_not_read(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"weights file \S+: cannot read it \("):
        archdsl.compile(SPEC, weights=tmp_path)


# ---- safetensors ----------------------------------------------------------------------
safetensors_torch = pytest.importorskip("safetensors.torch")


def test_safetensors_weights_load_and_compute_what_the_pth_does(
    net: nn.Module, tmp_path: Path
) -> None:
    """timm publishes safetensors; written by the reference library, read by archdsl's own
    reader, the network computes bit for bit what it computes from the same weights in a
    .pth (the reader copies the 8-byte-aligned data, so kernels see aligned weights)."""
    state = net.state_dict()
    safetensors_torch.save_file(dict(state), tmp_path / "w.safetensors", metadata={"format": "pt"})
    torch.save(state, tmp_path / "w.pth")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        from_pth = archdsl.compile(SPEC, weights=tmp_path / "w.pth").eval()(x)
        from_st = archdsl.compile(SPEC, weights=tmp_path / "w.safetensors").eval()(x)
    assert torch.equal(from_st, from_pth)
    assert torch.equal(from_st, net.eval()(x))


def test_safetensors_reader_and_writer_agree_with_the_reference_for_every_dtype(
    tmp_path: Path,
) -> None:
    """Odd sizes put most tensors at offsets that are not multiples of their item size."""
    torch.manual_seed(0)
    tensors = {}
    for i, (name, dtype) in enumerate(SAFETENSORS_DTYPES.items()):
        shape = (3, i + 1) if i % 2 else (i + 2,)
        if dtype.is_floating_point:
            t = torch.randn(shape).to(dtype)
        elif dtype == torch.bool:
            t = torch.rand(shape) > 0.5
        else:
            t = torch.randint(0, 100, shape, dtype=dtype)
        tensors[f"t.{name}"] = t
    tensors["empty"] = torch.zeros(0, 4)
    tensors["scalar"] = torch.tensor(2.5)
    path = tmp_path / "all.safetensors"
    safetensors_torch.save_file(tensors, path)
    ours = tmp_path / "ours.safetensors"
    write_safetensors(tensors, ours)
    for got, expected in (
        (read_state_dict(path), tensors),  # the reference's file, read by archdsl
        (safetensors_torch.load_file(ours), tensors),  # archdsl's file, read by the reference
    ):
        assert sorted(got) == sorted(expected)  # (the reference writes them in its own order)
        for k, t in expected.items():
            assert got[k].dtype == t.dtype and got[k].shape == t.shape, k
            assert torch.equal(
                got[k].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)
            ), k


def _safetensors_file(header: bytes, data: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + data


# fmt: off
@pytest.mark.parametrize(
    "content, message",
    [
        (_safetensors_file(b"{not json", b""), "its header is not JSON"),
        (_safetensors_file(b'{"w": {"dtype": "F32", "shape": [2]}}', b"\0" * 8), "tensor 'w': no 'data_offsets'"),
        (_safetensors_file(b'{"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}', b"\0" * 8),
         "tensor 'w': dtype 'C64' is not supported"),
        (_safetensors_file(b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', b"\0" * 8),
         r"tensor 'w': its bytes 0\.\.8 do not hold a \[3\] F32 tensor"),
        (_safetensors_file(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', b"\0" * 8),
         r"tensor 'w': its bytes 0\.\.16 do not hold"),
        (_safetensors_file(b'{"w": {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 4]}}', b"\0" * 4),
         "tensor 'w': malformed entry"),
        (_safetensors_file(b'{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}', b"\0" * 4),
         "tensor 'w': malformed entry"),
        (_safetensors_file(b'{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
         "tensor 'w': dtype \\['F32'\\] is not supported"),
        (_safetensors_file(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}', b"\0" * 4),
         "tensor 'w': its bytes 4..0 do not hold"),
        (_safetensors_file(b'{"w": [1]}', b""), "tensor 'w': malformed entry"),
        (_safetensors_file(b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b""), "nested too deeply"),
    ],
)
# fmt: on
def test_malformed_safetensors(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="not a valid safetensors file.*" + message):
        archdsl.compile(SPEC, weights=path)


def test_compare_ignores_missing_num_batches_tracked() -> None:
    expected = {"bn.weight": torch.empty(3), "bn.num_batches_tracked": torch.empty(())}
    assert not compare(expected, {"bn.weight": torch.zeros(3)})
    assert compare(expected, {}).missing == ["bn.weight"]


def test_load_weights_into_a_built_module(net: nn.Module, weights: Path) -> None:
    module = archdsl.build(archdsl.check(SPEC))  # an ordinary (initialised) module works too
    assert load_weights(module, weights) is module
    assert_same_state(net, module)


def test_bundled_network_with_its_own_weights(tmp_path: Path) -> None:
    net = archdsl.load("resnet18", num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    assert_same_state(net, archdsl.load("resnet18", num_classes=10, weights=path))
    with pytest.raises(WeightsError, match=r"\(2 wrong-shape tensors\)"):
        archdsl.load("resnet18", weights=path)  # 1000 classes: fc.weight, fc.bias differ


def test_cli_weights(
    net: nn.Module, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "small.arch"
    spec.write_text(SPEC)
    assert cli(["compile", str(spec), "--weights", str(weights)]) == 0
    assert re.search(r"^load +\d", capsys.readouterr().out, re.M)
    assert cli(["compile", str(spec), "--set", "num_classes=3", "--weights", str(weights)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:2:1: error: weights file {weights} does not fit network 'small'" in err
    assert "note: wrong shape: fc.weight (file [4, 8], network [3, 8])" in err


def test_backbone_takes_the_whole_networks_weights(tmp_path: Path) -> None:
    pytest.importorskip("archdsl.backbone")
    net = archdsl.load("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    backbone = archdsl.load("resnet18", outputs=["layer2"], weights=path)
    assert "fc.weight" not in backbone.state_dict()  # pruned, and ignored in the file
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, net.state_dict()[key], rtol=0, atol=0)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_any_damage_to_a_weights_file_is_a_weights_error(data: st.DataObject, tmp_path_factory) -> None:
    """A weights file is input too: truncated, overwritten or with its safetensors header
    edited, it loads or fails with a WeightsError, never another exception."""
    path = tmp_path_factory.mktemp("w") / "w"
    state = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2])}
    if data.draw(st.booleans(), label="safetensors"):
        write_safetensors(state, path)
    else:
        torch.save(state, path)
    blob = bytearray(path.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "overwrite", "header"]))
    if kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "overwrite":
        at = data.draw(st.integers(0, len(blob) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        blob[at : at + len(chunk)] = chunk
    elif blob[8:9] == b"{":  # a safetensors header: replace one of its numbers or names
        size = int.from_bytes(blob[:8], "little")
        header = blob[8 : 8 + size].decode()
        tokens = re.findall(r'\d+|"[^"]*"', header)
        old = data.draw(st.sampled_from(tokens))
        new = data.draw(st.sampled_from(['-1', '0', '99999999999999999999', '"F64"', '"x"', '[]', '{}', 'null', '1.5']))
        header = header.replace(old, new, 1).encode()
        blob = bytearray(len(header).to_bytes(8, "little")) + header + blob[8 + size :]
    path.write_bytes(bytes(blob))
    try:
        read_state_dict(path)
    except WeightsError:
        pass


@pytest.mark.parametrize("fmt", ["torch.save", "safetensors"])
def test_every_byte_of_a_weights_file_zeroed_is_a_weights_error_or_loads(fmt: str, tmp_path: Path) -> None:
    """The sweep behind the property above (which once found torch.load raising KeyError on
    a zeroed byte): each byte of a small file set to 0 in turn."""
    state = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2])}
    path = tmp_path / "w"
    if fmt == "safetensors":
        write_safetensors(state, path)
    else:
        torch.save(state, path)
    blob = path.read_bytes()
    damaged = tmp_path / "damaged"
    for at in range(len(blob)):
        if blob[at] == 0:
            continue
        damaged.write_bytes(blob[:at] + b"\0" + blob[at + 1 :])
        try:
            read_state_dict(damaged)
        except WeightsError:
            pass


def test_a_state_dict_object_loads_as_a_copy(net: nn.Module) -> None:
    """``weights=`` also takes a state_dict (a torchvision model's, say): strictly, and
    copied, so the two networks do not share tensors."""
    state = net.state_dict()
    loaded = archdsl.compile(SPEC, weights=state).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))
        loaded.stem.weight.add_(1.0)
    assert not torch.equal(loaded.stem.weight, net.stem.weight)
    partial = {k: v for k, v in state.items() if k != "fc.bias"}
    with pytest.raises(WeightsError, match=r"error: the state_dict given does not fit network 'small' \(1 missing") as info:
        archdsl.compile(SPEC, weights=partial)
    assert "missing from the state_dict: fc.bias" in info.value.render()


def test_weights_without_the_side_outputs_say_which_network_they_fit() -> None:
    """torchvision's googlenet(weights=...) drops the auxiliary heads: its state_dict fits
    googlenet(aux_logits=false), and the error for the network with heads says so."""
    state = archdsl.load("googlenet", aux_logits=False, device="meta").state_dict()
    with pytest.raises(WeightsError, match=r"\(18 missing tensors\)") as info:
        archdsl.load("googlenet", weights=state)
    assert info.value.notes[-1] == (
        "every missing tensor is in the training-only side outputs (aux1, aux2): these weights "
        "are for the network without them; build it with aux_logits=false"
    )
    # a missing tensor elsewhere too: no such note
    del state["fc.bias"]
    with pytest.raises(WeightsError) as info:
        archdsl.load("googlenet", weights=state)
    assert not any("side outputs" in note for note in info.value.notes)
    with pytest.raises(WeightsError, match="not a state_dict"):
        archdsl.compile(SPEC, weights={"fc.bias": [1, 2]})
