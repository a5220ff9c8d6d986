"""Layers the IR keeps at f32 whatever precision the device runs the rest of the graph at.

OpenVINO's CPU plugin (x86 and ARM alike) runs a layer carrying the runtime attribute
"precise" (``ov::disable_fp16_compression``) at f32 when it is asked for f16 or bf16. Python
cannot set that attribute on a node, so it is written into model.xml after ``save_model``; the
plugin reads it back with the IR.

Always kept at f32 (``layers_to_keep``):
- the depthwise convolutions: a few percent of the backbone's multiply-adds;
- the map from the last square root on (square root, up-sampling, smoothing, maximum);
- the outputs: without it the plugin rounds both outputs to f16 on their way out (a score of
  736 comes out a multiple of 0.5);
- the input and the backbone's first convolution: f16 would round the frame itself (a pixel
  near 255 to 1/8 of a grey level), and that error goes through every layer after it.

Measured in the emulated Pi 5 (OpenVINO 2026.4, ARM plugin, QEMU cortex-a76) on a Lite0/128
folder trained with ``inspectd train`` defaults (threshold 588), the worst of its 8 self-test
frames, as a fraction of the threshold (before the outputs and the first convolution were kept):

    all at f16                                score 0.49%, coarse map 1.04%  (limit 0.5%: refused)
    the head from the distance on at f32      score 0.21%, map 1.04%
    depthwise convolutions at f32             score 0.41%, map 0.41%
    depthwise convolutions + the map at f32   score 0.26%, map 0.31%

Beyond that, a folder may keep the first stages of its backbone at f32 too (``backbone_stages``):
how much f16 moves a folder's scores depends on its data, not only on its backbone (the f16 error of
the features is about the same in absolute terms; a folder whose good parts score low, as the
demo's mugs do, sees it as a larger share of its threshold). Export chooses how many
(f16_stages.py). The head's MatMuls stay at the device's precision.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

KEPT_ALWAYS = "the input and the first convolution; depthwise convolutions; the anomaly map from the square root on; the outputs"
PRECISE = {"name": "precise", "version": "0"}  # ov::DisableFP16Compression as the IR writes it
# A backbone layer's friendly name after ov.convert_model: the timm module's path, e.g. "...feature_extractor.blocks.1.0.conv_pw/..."
_MODULE = re.compile(r"feature_extractor\.feature_extractor\.([A-Za-z_]\w*(?:\.\d+)?)")
CONVOLUTIONS = ("Convolution", "GroupConvolution")


@dataclass(frozen=True)
class Stage:
    """One top-level part of the backbone (timm's ``conv_stem``, ``blocks.1``, ``layer2.0`` ...), in the order it runs."""

    name: str
    layers: frozenset[str]  # friendly names of its layers
    multiply_adds: int  # of its convolutions


def _module(node, depth: int = 0) -> str | None:
    """The backbone module a layer belongs to: its own name, else (a fused convolution is named "Multiply_123") its consumers'."""
    found = _MODULE.search(node.get_friendly_name())
    if found or depth >= 3:
        return found.group(1) if found else None
    for output in node.outputs():
        for target in output.get_target_inputs():
            module = _module(target.get_node(), depth + 1)
            if module:
                return module
    return None


def _multiply_adds(node) -> int:
    if node.get_type_name() not in CONVOLUTIONS:
        return 0
    weights = list(node.input(1).get_shape())
    per_output = weights[1:] if node.get_type_name() == "Convolution" else weights[2:]  # GroupConvolution: (groups, out, in, kh, kw)
    total = 1
    for size in (*node.get_output_shape(0), *per_output):
        total *= size
    return total


def _computing(model) -> list:
    return [op for op in model.get_ordered_ops() if op.get_type_name() not in ("Constant", "Parameter", "Result")]


def backbone_stages(model) -> list[Stage]:
    """The backbone's stages in the order they run. The first, "stem", holds the first convolution, everything before it
    (the input's layout and normalisation) and its own normalisation and activation: the part ``layers_to_keep`` always
    keeps."""
    ops = _computing(model)
    first = next(i for i, op in enumerate(ops) if op.get_type_name() in CONVOLUTIONS)
    names: dict[str, set[str]] = {}
    costs: dict[str, int] = {}
    for index, op in enumerate(ops):
        module = "stem" if index <= first else _module(op)
        if module is None:
            continue
        names.setdefault(module, set()).add(op.get_friendly_name())
        costs[module] = costs.get(module, 0) + _multiply_adds(op)
    stages: list[Stage] = []
    for name, layers in names.items():
        if stages and costs[name] == 0:  # no convolution of its own (the stem's normalisation and activation): part of the one before
            stages[-1] = Stage(stages[-1].name, stages[-1].layers | layers, stages[-1].multiply_adds)
        else:
            stages.append(Stage(name, frozenset(layers), costs[name]))
    return stages


def layers_to_keep(model, backbone_stages_kept: int = 0) -> set[str]:
    """Friendly names of the layers to run at f32: the always-kept ones (module docstring), plus the backbone's first
    ``backbone_stages_kept`` stages after the first convolution's."""
    ops = model.get_ordered_ops()
    keep = {op.get_friendly_name() for op in ops if op.get_type_name() == "GroupConvolution"}
    keep |= {op.get_friendly_name() for op in model.get_results()}
    for stage in backbone_stages(model)[: 1 + backbone_stages_kept]:
        keep |= stage.layers
    roots = [op for op in ops if op.get_type_name() == "Sqrt"]
    todo = roots[-1:]
    while todo:
        node = todo.pop()
        if node.get_friendly_name() in keep:
            continue
        keep.add(node.get_friendly_name())
        todo += [target.get_node() for output in node.outputs() for target in output.get_target_inputs()]
    return keep


def mark_precise(xml_path: Path, names: set[str]) -> int:
    """Add the "precise" runtime attribute to the layers of model.xml named in ``names``; returns how many were marked."""
    tree = ElementTree.parse(xml_path)
    marked = 0
    for layer in tree.getroot().iter("layer"):
        if layer.get("name") not in names:
            continue
        rt_info = layer.find("rt_info")
        if rt_info is None:
            rt_info = ElementTree.SubElement(layer, "rt_info")
        if not any(a.get("name") == PRECISE["name"] for a in rt_info.iter("attribute")):
            ElementTree.SubElement(rt_info, "attribute", PRECISE)
        marked += 1
    tree.write(xml_path, encoding="utf-8", xml_declaration=True)
    return marked
