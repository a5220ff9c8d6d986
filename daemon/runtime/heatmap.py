"""Heatmap pictures: the frame beside the frame with its anomaly map laid over it."""

from __future__ import annotations

import cv2
import numpy as np

from inspectd.daemon.runtime.model import Inspection


def overlay(frame: np.ndarray, result: Inspection, *, threshold: float | None = None, rejected: bool | None = None) -> np.ndarray:
    """Original | overlay, side by side, with the verdict written on it.

    ``threshold`` and ``rejected`` are what was acted on, when that is not the model's own call
    (the station's configured threshold, minimum defect area or confirmation): the picture is
    then labelled, scaled and outlined with those, so it never contradicts the reject line.

    Colours are on a fixed scale so pictures compare: blue is a score of 0, green the
    threshold, red twice the threshold or more. Regions above the threshold are outlined.
    """
    threshold = result.threshold if threshold is None else threshold
    rejected = result.anomalous if rejected is None else rejected
    if frame.ndim == 2 or frame.shape[2] == 1:  # a gray frame, shown as gray
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    heat = result.anomaly_map()
    scaled = np.clip(heat / (2.0 * threshold), 0.0, 1.0)
    colours = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(frame, 0.5, colours, 0.5, 0.0)
    above = (heat > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, frame.shape[1] // 300)
    cv2.drawContours(blended, contours, -1, (255, 255, 255), thickness)
    label = f"{'REJECT' if rejected else 'PASS'}  score {result.score:.2f} / threshold {threshold:.2f}"
    scale = max(0.4, frame.shape[1] / 900)
    colour = (0, 0, 255) if rejected else (0, 200, 0)
    cv2.putText(blended, label, (8, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4 * thickness, cv2.LINE_AA)
    cv2.putText(blended, label, (8, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2 * thickness, cv2.LINE_AA)
    return np.hstack([frame, blended])
