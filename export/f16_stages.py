"""How much of the backbone a folder keeps at f32 (precise.py), chosen at export by measuring f16 where the CPU runs it.

The fewest stages after the first convolution's such that this CPU's f16 gives, on the riskiest of the export's
frames (the self-test's choice, up to FRAMES), no verdict flip and every score and coarse map within 1/MARGIN of
the self-test's reduced-precision limit. MARGIN covers the device's own f16 kernels (the Pi's, measured in the
emulated Pi 5, are less exact than an x86's with AVX-512 FP16) and the frames the self-test does not hold.
Stages are kept up to MAX_KEPT_SHARE of the backbone's multiply-adds: beyond that f16 would save too little to be
worth it; such a folder keeps only what every folder keeps, and the device's self-test decides (f32 there, most likely).
Where this CPU does not run f16 (an AVX2 workstation) nothing is measured: only what every folder keeps.
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

MARGIN = 4.0
FRAMES = 32
MAX_KEPT_SHARE = 0.7


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
        if kept and share > MAX_KEPT_SHARE:
            break
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
    lines.append(f"f16 does not reach the aim here with up to {MAX_KEPT_SHARE * 100:.0f}% of the backbone at f32: keeping only "
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
