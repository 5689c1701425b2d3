"""U-Net (``specs/unet.arch``), the first bundled network that upsamples: its wiring
against a U-Net written directly in torch from the paper's Fig. 1 (the padded, batch-norm
variant the spec describes), key for key and output for output, and its outputs through
the ``.py`` output, the inference rewrites and the exports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from emitted import assert_every_output_computes
from reference import fill


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )


class Down(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class TorchUNet(nn.Module):
    """The oracle: four poolings down, four 2x2 transposed convolutions up, each level's
    map concatenated before what comes up (Fig. 1's copy), then convolved."""

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        w = [width * 2**i for i in range(5)]
        self.inc = DoubleConv(in_channels, w[0])
        self.down1, self.down2 = Down(w[0], w[1]), Down(w[1], w[2])
        self.down3, self.down4 = Down(w[2], w[3]), Down(w[3], w[4])
        for level in (4, 3, 2, 1):
            setattr(self, f"up{level}", nn.ConvTranspose2d(w[level], w[level - 1], 2, stride=2))
            setattr(self, f"conv{level}", DoubleConv(w[level], w[level - 1]))
        self.outc = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for level in (1, 2, 3, 4):
            skips.append(getattr(self, f"down{level}")(skips[-1]))
        y = skips.pop()
        for level in (4, 3, 2, 1):
            up = getattr(self, f"up{level}")(y)
            y = getattr(self, f"conv{level}")(torch.cat([skips.pop(), up], 1))
        return self.outc(y)


def test_keys_shapes_and_parameters_are_the_papers_network() -> None:
    ours = archdsl.load("unet", device="meta").state_dict()
    with torch.device("meta"):
        theirs = TorchUNet(3, 2, 64).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    assert archdsl.count_params(archdsl.check_file(archdsl.spec_path("unet"))) == 31_037_698


def test_outputs_are_the_papers_network() -> None:
    # batch norm's statistics filled too, so that eval mode is not the identity
    reference = fill(TorchUNet(1, 3, 4)).double().eval()
    model = archdsl.load("unet", params={"in_channels": 1, "num_classes": 3, "width": 4,
                                         "resolution": 48}).double().eval()  # fmt: skip
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 1, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-12, atol=1e-12)


def test_a_resolution_the_poolings_cannot_halve_is_refused() -> None:
    with pytest.raises(archdsl.ArchError, match="divisible by 16") as info:
        archdsl.check_file(archdsl.spec_path("unet"), resolution=200)
    assert info.value.path.endswith("unet.arch")


def test_py_output_exports_and_inference_rewrites_compute_the_same(tmp_path: Path) -> None:
    model = fill(archdsl.load("unet", params={"width": 4, "resolution": 32}))
    assert_every_output_computes(model, torch.randn(2, 3, 32, 32), tmp_path)


@pytest.mark.parametrize(
    "up",
    [
        "upsample(2)",
        'upsample([2, 3], mode="bilinear")',
        'upsample(2, mode="bilinear", align_corners=true)',
        'upsample(3, mode="bicubic")',
        "conv_transpose(4, 3, stride=2, padding=1, output_padding=1, groups=2)",
    ],
)
def test_each_way_up_exports_and_writes_out(up: str, tmp_path: Path) -> None:
    """The upsampling ops through the ``.py`` output, torch.export and ONNX (onnxruntime:
    the Resize node's modes), and the inference rewrites, each against the built network."""
    net = fill(
        archdsl.compile(f"""network t {{
      input [4, 6, 6]
      c: conv(4, 3, padding=1) -> u: {up} -> b: bn -> relu
    }}""")
    )
    assert_every_output_computes(net, torch.randn(2, 4, 6, 6), tmp_path)


def test_py_output_writes_whole_factors_as_a_person_would() -> None:
    net = archdsl.compile("""network t {
      input [4, 6, 6]
      a: upsample(2) -> b: upsample([1, 3], mode="bilinear")
    }""")
    source = archdsl.emit_python(net)
    assert "self.a = nn.Upsample(scale_factor=2)" in source  # torch keeps 2.0
    assert 'nn.Upsample(scale_factor=(1, 3), mode="bilinear", align_corners=False)' in source
