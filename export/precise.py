"""Layers the IR keeps at f32 whatever precision the device runs the rest of the graph at.

OpenVINO's CPU plugin (x86 and ARM alike) runs a layer carrying the runtime attribute
"precise" (``ov::disable_fp16_compression``) at f32 when it is asked for f16 or bf16. Python
cannot set that attribute on a node, so it is written into model.xml after ``save_model``; the
plugin reads it back with the IR.

Kept at f32, measured in the emulated Pi 5 (OpenVINO 2026.4, ARM plugin, QEMU cortex-a76) on a
Lite0/128 folder trained with ``inspectd train`` defaults (threshold 588), the worst of its 8
self-test frames, as a fraction of the threshold:

    all at f16                                score 0.49%, coarse map 1.04%  (limit 0.5%: refused)
    the head from the distance on at f32      score 0.21%, map 1.04%
    depthwise convolutions at f32             score 0.41%, map 0.41%
    depthwise convolutions + the map at f32   score 0.26%, map 0.31%

The depthwise convolutions are a few percent of the backbone's multiply-adds; the map path
(square root, up-sampling, smoothing, maximum) is a small part of the graph's work; the
pointwise and full convolutions and the head's MatMuls, nearly all of it, stay at the
device's precision. (Kept-at-f32 layers cost a conversion each way.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

KEPT_AT_F32 = "depthwise convolutions; the anomaly map from the square root on"  # inspectd.json head.kept_at_f32
PRECISE = {"name": "precise", "version": "0"}  # ov::DisableFP16Compression as the IR writes it


def layers_to_keep(model) -> set[str]:
    """Friendly names of the layers to run at f32: every depthwise convolution, and the map from the last square root on."""
    ops = model.get_ordered_ops()
    keep = {op.get_friendly_name() for op in ops if op.get_type_name() == "GroupConvolution"}
    roots = [op for op in ops if op.get_type_name() == "Sqrt"]
    todo = roots[-1:]
    while todo:
        node = todo.pop()
        if node.get_friendly_name() in keep or node.get_type_name() == "Result":
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
