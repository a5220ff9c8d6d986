"""Heatmap pictures: the frame beside the frame with its anomaly map laid over it."""

from __future__ import annotations

import cv2
import numpy as np

from inspectd.daemon.runtime.decision import Rule, Verdict
from inspectd.daemon.runtime.model import Inspection


def overlay(frame: np.ndarray, result: Inspection, rule: Rule, verdict: Verdict) -> np.ndarray:
    """Original | overlay, side by side, labelled with the verdict the rule gave: the picture never contradicts
    the reject line.

    Colours are on a fixed scale so pictures compare: blue is a score of 0, green the
    threshold, red twice the threshold or more. Regions above the pixel threshold (the
    threshold unless the rule sets one) are outlined: what a minimum defect area counts.
    """
    if frame.ndim == 2 or frame.shape[2] == 1:  # a gray frame, shown as gray
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    heat = result.anomaly_map()
    scaled = np.clip(heat / (2.0 * rule.threshold), 0.0, 1.0)
    colours = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(frame, 0.5, colours, 0.5, 0.0)
    above = (heat > rule.area_threshold).astype(np.uint8)
    contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, frame.shape[1] // 300)
    cv2.drawContours(blended, contours, -1, (255, 255, 255), thickness)
    label = f"{verdict}  score {result.score:.2f} / threshold {rule.threshold:.2f}"
    scale = max(0.4, frame.shape[1] / 900)
    colour = (0, 0, 255) if verdict is Verdict.REJECT else (0, 200, 0)
    cv2.putText(blended, label, (8, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4 * thickness, cv2.LINE_AA)
    cv2.putText(blended, label, (8, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2 * thickness, cv2.LINE_AA)
    return np.hstack([frame, blended])
