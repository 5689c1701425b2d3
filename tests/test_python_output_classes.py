"""The classes of the ``.py`` output: one per structure a block is built with, named by
what tells it from the others and saying in its docstring which arguments make it."""

from __future__ import annotations

import re
from pathlib import Path

import archdsl

ROOT = Path(__file__).resolve().parent.parent


def test_py_one_class_per_structure_parameters_where_instances_differ() -> None:
    source = archdsl.emit_python(archdsl.load_graph("googlenet"))
    assert source.count("class Inception(nn.Module):") == 1
    assert "self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)" in source
    assert re.search(
        r"class BasicConv\(nn.Module\):.*def __init__\(\s*self, in_channels: int, "
        r"out_channels: int, kernel: int, stride: int = 1, padding: int = 0",
        source,
        re.DOTALL,
    )
    assert "self.branch2 = nn.Sequential(" in source  # a numbered chain: nn.Sequential
    assert "x = self.inception4a(x)  # N x 512 x 14 x 14" in source


def test_py_names_structural_variants_by_what_differs() -> None:
    """A block built with different structures gets a class per structure, named by the
    members the plainest lacks, or by the size of a numbered family of members."""
    densenet = archdsl.emit_python(archdsl.load_graph("densenet121"))
    for layers in (6, 12, 24, 16):
        assert f"class DenseBlock{layers}(nn.Module):" in densenet
        assert (
            f"self.denselayer{layers} = DenseLayer("
            in densenet.split(f"class DenseBlock{layers}(")[1]
        )
    assert "self.denseblock3 = DenseBlock24()" in densenet
    resnet = archdsl.emit_python(archdsl.load_graph("resnet50"))
    assert "class BottleneckDownsample(nn.Module):" in resnet
    assert "class Bottleneck(nn.Module):" in resnet
    # a leaf of a specialised class in the same place: DeformConv2d over Conv2d
    dcn = _class_names(archdsl.emit_python(archdsl.load_graph("dcn_resnet50")))
    assert dcn == [
        "DeformConv2d",
        "BottleneckDownsample",
        "Bottleneck",
        "BottleneckDownsampleDeform",
        "BottleneckDeform",
        "DcnResnet50",
    ]
    # where no member tells the classes apart: an argument moved off the neutral value the
    # plainest has (expand_ratio 6, not 1), then the input added to the result; the
    # expansion convolution shifts the numbered members, which is not a leaf replaced
    mobilenet = archdsl.emit_python(archdsl.load_graph("mobilenet_v2"))
    assert _class_names(mobilenet)[1:4] == [
        "InvertedResidual",
        "InvertedResidualExpand",
        "InvertedResidualExpandSkip",
    ]
    efficientnet = _class_names(archdsl.emit_python(archdsl.load_graph("efficientnet_b0")))
    assert efficientnet[2:5] == ["Mbconv", "MbconvExpand", "MbconvStochasticDepth"]
    # the member says it (no "Skip" after it); where it repeats a name, the argument added
    efficientnet = _class_names(archdsl.emit_python(archdsl.load_graph("efficientnet_b3")))
    assert efficientnet[2:6] == [
        "Mbconv",
        "MbconvStochasticDepth",
        "MbconvExpand",
        "MbconvStochasticDepthExpand",
    ]
    # a flag is named by what it is about (use_se: Se), a string argument by its value
    mobilenet = _class_names(archdsl.emit_python(archdsl.load_graph("mobilenet_v3_large")))
    assert {"BneckSe", "BneckSeSkip", "BneckHs", "BneckSeHs", "BneckSeHsSkip"} <= set(mobilenet)


def test_py_block_classes_say_which_arguments_make_them() -> None:
    """Each class of a block built with several structures names in its docstring the
    block's arguments that are the same for all its instances and differ between the
    classes: the one thing a reader cannot see in a numbered name."""
    mobilenet = archdsl.emit_python(archdsl.load_graph("mobilenet_v2"))
    docs = re.findall(r"class (InvertedResidual\w*)\(nn.Module\):\n\s+\"\"\"(.*?)\"\"\"", mobilenet)
    assert [(name, doc.split(")")[-1]) for name, doc in docs] == [
        ("InvertedResidual", " with expand_ratio = 1."),
        ("InvertedResidualExpand", " with expand_ratio = 6."),
        ("InvertedResidualExpandSkip", " with expand_ratio = 6."),
    ]
    # the place is the block's definition, not one of its calls
    line = _defined_at("lib/densenet.arch", "block dense_block(")
    densenet = archdsl.emit_python(archdsl.load_graph("densenet121"))
    doc = densenet.split("class DenseBlock24(nn.Module):")[1].split("\n")[1]
    assert doc.endswith(f'(densenet.arch, line {line}) with num_layers = 24."""')
    dcn = archdsl.emit_python(archdsl.load_graph("dcn_resnet50"))
    assert "with stride = 1, deformable = true." in dcn.split("class BottleneckDeform(")[1]
    # a block built with one structure: nothing to tell apart
    line = _defined_at("lib/inception.arch", "block inception(")
    googlenet = archdsl.emit_python(archdsl.load_graph("googlenet"))
    doc = googlenet.split("class Inception(nn.Module):")[1].split("\n")[1]
    assert doc.endswith(f'(inception.arch, line {line})."""')


def _defined_at(spec: str, start: str) -> int:
    """The line of ``specs/{spec}`` that starts with ``start``."""
    lines = (ROOT / "specs" / spec).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.startswith(start))


def _class_names(source: str) -> list[str]:
    return re.findall(r"^class (\w+)\(", source, re.MULTILINE)
