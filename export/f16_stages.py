"""How much of the backbone a folder keeps at f32 (precise.py), chosen at export by measuring f16 where the CPU runs it.

The fewest stages after the first convolution's (up to all of them: then only the head's MatMuls run at f16, which
halves the bytes of inverse covariances read per frame) such that this CPU's f16 gives, on the riskiest of the
export's frames (the self-test's choice, up to FRAMES), no verdict flip and every score and coarse map within
1/MARGIN of the self-test's reduced-precision limit. MARGIN covers the device's own f16 kernels and the frames the
self-test does not hold: in the emulated Pi 5 (OpenVINO's ARM plugin, cortex-a76) one backbone stage at f16 moved the
demo mugs' coarse map 1.1 to 3.8 times as much as this x86 (AVX-512 FP16) did, the whole graph 2.2 times.
If not even the head alone reaches the aim, only what every folder keeps is kept, and the device's self-test decides
(f32 there, most likely). Where this CPU does not run f16 (an AVX2 workstation) nothing is measured: only what every
folder keeps.

The demo mugs' Lite0/128 model (threshold 94 then), in the emulated Pi 5, the worst of its 8 self-test frames,
score / coarse map error as a share of the threshold (this x86 at f16 in brackets):

    depthwise convolutions and the map at f32 (before)       2.26% / 3.22%   (0.93% / 1.48%)
    + the outputs, the input and the first convolution       1.18% / 2.18%   (0.24% / 0.50%)
    + the backbone through blocks.1 (31% of its mult-adds)   0.73% / 1.23%   (0.20% / 0.59%)
    + through blocks.3 (65%)                                 0.16% / 0.74%   (0.04% / 0.14%)
    + the whole backbone: only the head's MatMuls at f16     0.04% / 0.16%   (0.02% / 0.05%)
    one stage alone at f16 (blocks.1, blocks.3, blocks.4)    0.66-0.69% / 0.67-0.78%   (0.06-0.15% / 0.15-0.63%)
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from inspectd.daemon import schema
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.runtime.selftest import coarse_map

from . import selftest
from .precise import KEPT_ALWAYS, backbone_stages, layers_to_keep, mark_precise
from .verify import Frame, Scores, pixels_of

MARGIN = 8.0
FRAMES = 32


@dataclass(frozen=True)
class Choice:
    stages: int  # kept after the first convolution's
    description: str  # inspectd.json head.kept_at_f32
    lines: tuple[str, ...]  # what was measured, for the export's output


def choose(folder: schema.ModelFolder, frames: list[Frame], scores: Scores, threshold: float, reduced_limit: float) -> Choice:
    """Mark model.xml in ``folder`` (a draft, already marked by export_ir) with the stages chosen; returns the choice."""
    import openvino as ov

    xml = folder.xml_path
    graph = ov.Core().read_model(str(xml))
    stages = backbone_stages(graph)
    total = sum(stage.multiply_adds for stage in stages) or 1
    first = Model(folder, precision="f16")
    if first.precision != "f16":
        return Choice(0, KEPT_ALWAYS, (f"f16 not measured here (this CPU runs it as {first.precision}): keeping at f32 only "
                                       f"{KEPT_ALWAYS}",))
    chosen = selftest.choose(scores.reference, threshold, FRAMES)
    pixels = [pixels_of(frames[i]) for i in chosen]
    target = reduced_limit / MARGIN
    original = xml.read_bytes()
    lines = []
    for kept in range(len(stages)):
        share = sum(stage.multiply_adds for stage in stages[: kept + 1]) / total
        mark_precise(xml, layers_to_keep(graph, kept))
        model = first if kept == 0 else Model(folder, precision="f16")
        error, flips = _error(model, pixels, scores, chosen, threshold)
        where = f"f32 through {stages[kept].name} ({share * 100:.0f}% of the backbone's multiply-adds)"
        lines.append(f"f16 here with {where}: {error * 100:.3f}% of the threshold at most, {flips} flips "
                     f"(aim: {target * 100:.3g}%, 1/{MARGIN:g} of the self-test's f16 limit)")
        if flips == 0 and error <= target:
            return Choice(kept, KEPT_ALWAYS if kept == 0 else f"{KEPT_ALWAYS}; the backbone through {stages[kept].name} "
                          f"({share * 100:.0f}% of its multiply-adds)", tuple(lines))
    xml.write_bytes(original)
    lines.append(f"f16 does not reach the aim here even with the whole backbone at f32: keeping only "
                 f"{KEPT_ALWAYS} (the device's self-test decides; f32 there, most likely)")
    return Choice(0, KEPT_ALWAYS, tuple(lines))


def _error(model: Model, pixels: list[np.ndarray], scores: Scores, chosen: list[int], threshold: float) -> tuple[float, int]:
    """The self-test's measure on these frames: the largest score or coarse-map error as a fraction of the threshold; flips."""
    rule, worst, flips = Rule(threshold), 0.0, 0
    for frame, index in zip(pixels, chosen):
        try:
            result = model.infer(frame)
        except InspectdError:  # a non-finite score: f16 overflows
            return float("inf"), flips
        worst = max(worst, abs(result.score - scores.reference[index]) / threshold,
                    float(np.abs(coarse_map(result.model_map) - scores.reference_maps[index]).max()) / threshold)
        flips += rule.anomalous(result.score)[0] != rule.anomalous(scores.reference[index])[0]
    return worst, flips
