"""``summary(..., outputs=)`` and ``archdsl summary --outputs``: the channels, size and
stride of a backbone's feature maps, from the spec alone."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

import archdsl
from archdsl.analysis import summary
from archdsl.backbone import shape_stride
from archdsl_cli.main import main as cli

OUTPUTS = ["layer2", "layer3", "layer4"]


def test_resnet50_outputs_strides_and_channels() -> None:
    s = summary("resnet50", depth=1, outputs=OUTPUTS)
    assert [(o.name, o.channels, o.output_shape[1:], o.stride) for o in s.outputs] == [
        ("layer2", 512, (28, 28), 8),
        ("layer3", 1024, (14, 14), 16),
        ("layer4", 2048, (7, 7), 32),
    ]
    assert all(o.effective_stride == o.stride and o.note == "" for o in s.outputs)
    # the shapes' ratio agrees with the receptive-field analysis and feature_info
    info = archdsl.feature_info(archdsl.load_graph("resnet50"), OUTPUTS)
    assert [f.stride for f in info] == [o.stride for o in s.outputs]
    # the totals stay the whole network's
    assert s.params == summary("resnet50").params and s.output_shape == (1000,)


def test_outputs_in_every_format() -> None:
    s = summary("resnet50", depth=1, outputs=OUTPUTS)
    text = s.render("text")
    assert "Outputs (stride = input size / output size):" in text
    rows = text.split("Outputs (stride")[1].splitlines()[1:]
    assert [r.split() for r in rows] == [
        ["Output", "Channels", "Size", "Stride"],
        ["layer2", "512", "28x28", "8"],
        ["layer3", "1,024", "14x14", "16"],
        ["layer4", "2,048", "7x7", "32"],
    ]
    assert "| layer3 | 1,024 | 14x14 | 16 |" in s.render("markdown")
    data = json.loads(s.render("json"))
    assert data["outputs"][2] == {
        "name": "layer4",
        "output_shape": [2048, 7, 7],
        "channels": 2048,
        "stride": 32,
        "effective_stride": 32,
        "note": "",
    }
    table = list(csv.DictReader(io.StringIO(s.render("csv"))))
    assert [(r["name"], r["channels"], r["stride"]) for r in table] == [
        ("layer2", "512", "8"),
        ("layer3", "1024", "16"),
        ("layer4", "2048", "32"),
    ]
    plain = summary("resnet50", depth=1)
    assert plain.outputs == () and "Outputs" not in plain.render("text")
    assert json.loads(plain.render("json"))["outputs"] == []
    assert list(csv.DictReader(io.StringIO(plain.render("csv"))))[0]["name"] == "conv1"


def test_strides_that_do_not_divide_or_differ_are_explained() -> None:
    # Inception-v3 at 299 pixels: 35x35, 17x17, 8x8 grids; the ratios are not integers
    s = summary("inception_v3", depth=1, outputs=["Mixed_5d", "Mixed_7c", "fc"])
    mixed_5d, mixed_7c, fc = s.outputs
    assert (mixed_5d.stride, mixed_5d.effective_stride) == (8.543, 8)
    assert mixed_5d.note == "299/35 does not divide"
    assert (mixed_7c.stride, mixed_7c.effective_stride) == (37.375, 32)
    assert (fc.stride, fc.note) == (None, "flat features: no spatial stride")
    text = s.render("text")
    assert "299/35 does not divide; effective stride 8" in text
    # a [1, 2] stride: the axes differ
    spec = "network n { input [3, 32, 32]; a: conv(8, 3, stride=[1, 2], padding=1) -> relu }"
    (a,) = summary(spec, outputs=["a"]).outputs
    assert (a.stride, a.note) == ([1, 2], "H and W strides differ")
    assert "H and W strides differ" in summary(spec, outputs=["a"]).render("markdown")


@pytest.mark.parametrize(
    "in_shape, out_shape, expected",
    [
        ((3, 224, 224), (64, 56, 56), (4, "")),
        ((3, 224, 224), (64, 224, 224), (1, "")),
        ((3, 64, 48), (8, 8, 8), ([8, 6], "H and W strides differ")),
        (
            (3, 30, 31),
            (8, 4, 4),
            ([7.5, 7.75], "H and W strides differ; 30/4 and 31/4 do not divide"),
        ),
        ((3, 8, 8), (16,), (None, "flat features: no spatial stride")),
    ],
)
def test_shape_stride(in_shape, out_shape, expected) -> None:
    assert shape_stride(in_shape, out_shape) == expected


def test_unknown_output_is_a_name_error_with_a_suggestion() -> None:
    with pytest.raises(archdsl.ArchNameError, match="did you mean 'layer3'"):
        summary("resnet50", outputs=["layer_3"])
    with pytest.raises(archdsl.ArchNameError, match="name at least one module path"):
        summary("resnet50", outputs=[])


def test_cli_outputs_comma_separated_or_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["summary", "resnet50", "--depth", "1", "--outputs", "layer2,layer3"]) == 0
    comma = capsys.readouterr().out
    assert (
        cli(["summary", "resnet50", "--depth", "1", "--outputs", "layer2", "--outputs", "layer3"])
        == 0
    )
    assert capsys.readouterr().out == comma
    rows = comma.split("Outputs (stride = input size / output size):")[1].strip().splitlines()
    assert [r.split() for r in rows[1:]] == [
        ["layer2", "512", "28x28", "8"],
        ["layer3", "1,024", "14x14", "16"],
    ]
    assert cli(["summary", "resnet50", "--outputs", "layer4", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["stride"] == 32


def test_cli_outputs_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["summary", "resnet50", "--outputs", "layer_3"]) == 1
    assert "did you mean 'layer3'?" in capsys.readouterr().err
    assert cli(["summary", "resnet50", "--outputs", ","]) == 2
    assert "--outputs: name at least one module path" in capsys.readouterr().err


def test_outputs_need_no_torch() -> None:
    code = (
        "import sys, archdsl.analysis\n"
        "s = archdsl.analysis.summary('resnet50', outputs=['layer3'])\n"
        "assert s.outputs[0].stride == 16 and 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
