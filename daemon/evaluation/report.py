"""``inspectd evaluate --report DIR``: what a person would rather look at than numbers.

    DIR/index.html          the figures, the histogram and the worst cases on one page
    DIR/histogram.png       scores of good and defective parts, the threshold marked
    DIR/false_reject_*.png  the good parts the rule rejected, highest score first (frame | heatmap)
    DIR/false_accept_*.png  the defective parts it passed, lowest score first

Drawn with OpenCV only: the station has no plotting library.
"""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.evaluation.measure import Scored
from inspectd.daemon.runtime.decision import Rule, Verdict
from inspectd.daemon.runtime.heatmap import overlay
from inspectd.daemon.runtime.images import read_image, write_png
from inspectd.daemon.runtime.model import Model

WORST = 4
GOOD_COLOUR, BAD_COLOUR, LINE_COLOUR = (80, 170, 60), (60, 60, 220), (0, 0, 0)


def histogram(scored: list[Scored], threshold: float, width: int = 900, height: int = 420, bins: int = 40) -> np.ndarray:
    """Counts of good (green) and defective (red) scores in shared bins, the threshold as a black line."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, width - 20, 40, height - 50
    scores = np.array([s.score for s in scored] + [threshold])
    low, high = float(scores.min()), float(scores.max())
    high = high if high > low else low + 1.0
    edges = np.linspace(low, high, bins + 1)
    groups = [(np.array([s.score for s in scored if not s.sample.anomalous]), GOOD_COLOUR, "good"),
              (np.array([s.score for s in scored if s.sample.anomalous]), BAD_COLOUR, "defective")]
    counts = [np.histogram(values, edges)[0] for values, _, _ in groups]
    tallest = max(1, *(int(c.max()) for c in counts if c.size))
    x_of = lambda value: int(left + (value - low) / (high - low) * (right - left))  # noqa: E731
    for count, (_, colour, _) in zip(counts, groups):
        layer = canvas.copy()
        for index, n in enumerate(count):
            if n:
                cv2.rectangle(layer, (x_of(edges[index]), bottom - int(n / tallest * (bottom - top))), (x_of(edges[index + 1]) - 1, bottom), colour, -1)
        canvas = cv2.addWeighted(layer, 0.6, canvas, 0.4, 0)
    cv2.line(canvas, (left, bottom), (right, bottom), LINE_COLOUR, 1)
    cv2.line(canvas, (x_of(threshold), top - 10), (x_of(threshold), bottom), LINE_COLOUR, 2)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, f"threshold {threshold:.3f}", (min(x_of(threshold) + 6, right - 160), top), font, 0.5, LINE_COLOUR, 1, cv2.LINE_AA)
    for value in (low, high):
        cv2.putText(canvas, f"{value:.2f}", (x_of(value) - 20, bottom + 20), font, 0.45, LINE_COLOUR, 1, cv2.LINE_AA)
    cv2.putText(canvas, "score (raw PaDiM)", (width // 2 - 70, height - 10), font, 0.5, LINE_COLOUR, 1, cv2.LINE_AA)
    for row, (values, colour, name) in enumerate(groups):
        cv2.rectangle(canvas, (right - 150, 12 + 18 * row), (right - 136, 24 + 18 * row), colour, -1)
        cv2.putText(canvas, f"{name} ({values.size})", (right - 130, 23 + 18 * row), font, 0.45, LINE_COLOUR, 1, cv2.LINE_AA)
    cv2.putText(canvas, f"max {tallest}", (5, top + 5), font, 0.4, LINE_COLOUR, 1, cv2.LINE_AA)
    return canvas


def worst_cases(scored: list[Scored]) -> list[tuple[str, Scored]]:
    """The good parts the rule rejected, highest score first, and the defective ones it passed, lowest first."""
    rejected_good = sorted((s for s in scored if not s.sample.anomalous and s.decided.verdict is Verdict.REJECT), key=lambda s: -s.score)
    missed = sorted((s for s in scored if s.sample.anomalous and s.decided.verdict is Verdict.PASS), key=lambda s: s.score)
    return [("false_reject", s) for s in rejected_good[:WORST]] + [("false_accept", s) for s in missed[:WORST]]


def write_report(folder: Path, model: Model, rule: Rule, scored: list[Scored], lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / "histogram.png", histogram(scored, rule.threshold))
    pictures = []
    for number, (kind, case) in enumerate(worst_cases(scored), 1):
        frame = read_image(case.sample.path)
        name = f"{kind}_{number}_{case.sample.kind}_{case.sample.path.stem}.png"
        write_png(folder / name, overlay(frame, model.infer(frame, str(case.sample.path)), rule, case.decided.verdict))
        pictures.append((kind.replace("_", " "), name, case))
    rows = "".join(f"<tr><td><pre>{html.escape(line)}</pre></td></tr>" for line in lines)
    cases = "".join(f"<figure><img src='{html.escape(name)}' width='640'><figcaption>{kind}: {html.escape(str(case.sample.path))}, "
                    f"score {case.score:.3f}</figcaption></figure>" for kind, name, case in pictures) or "<p>No false rejects or false accepts.</p>"
    page = (f"<!doctype html><meta charset='utf-8'><title>inspectd evaluate</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}}pre{{margin:0}}td{{padding:0 .5em}}</style>"
            f"<h1>inspectd evaluate</h1><table>{rows}</table><h2>Scores</h2><img src='histogram.png'>"
            f"<h2>Worst cases</h2>{cases}")
    (folder / "index.html").write_text(page, encoding="utf-8")
    return folder / "index.html"
