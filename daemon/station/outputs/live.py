"""``[live]``: the live tap. The latest frame, its verdict and heatmap, written for the station page
(``inspectd web``) under /run at ``rate_hz`` (2 a second by default; 0 = off), in the format of ``livetap``.

The station itself never touches the network: the page, a process of its own, reads these files.

- ``path`` "" (the default) is ``$RUNTIME_DIRECTORY/live``: /run/inspectd/live under inspectd.service
  (``RuntimeDirectory=inspectd``, removed when the service stops). Run outside systemd with no path
  set, the station has no tap (a developer's shell or a test writes nothing into the host's /run).
- On the inspection loop a verdict costs a clock read; when one is due, the loop hands it over and
  a thread of its own (at niceness 10: on busy cores the inspection is served first) measures the setup
  aids, scales the frame down, encodes it and writes the files, so the tap never delays a verdict.
  The writer takes at most CPU_BUDGET (1.5%) of the process's CPU time, or of one core where the station
  uses less: a CPU-bound station loses no more than that share of its frames to the tap, and shows fewer
  live frames when it would. A frame that comes while the previous one is still being written
  replaces it (the page wants the latest, not every one).
- A folder the tap cannot write to is one fault record (INSPECTD_FAULT=output) until it works again
  (a start record, INSPECTD_RECOVERED=output): never a record per frame, never a lost verdict.
- ``close`` deletes the files: a page reading a stopped station sees no stale frame.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspectd.daemon.errors import ConfigError
from inspectd.daemon.livetap import (CLIPPED_BRIGHT, CLIPPED_DARK, HISTOGRAM_BINS, KEEP, SHOWN_MAX_SIDE, STATE_FILE, Aids, LiveState,
                                     frame_name, heatmap_name, is_tap_file, write_atomically)
from inspectd.daemon.station.outputs.interface import EventKind, Fault, Notice, Output, OutputConfig, describe
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.verdict import FrameVerdict

JPEG_QUALITY = 80
RATE_MAX_HZ = 30.0
FPS_WINDOW = 64  # frames over which the frame rate is measured
# The heatmap's opacity by colour level (0-255 is 0 to twice the threshold): clear below a third of the threshold,
# opaque from the threshold up.
ALPHA = (np.clip((np.arange(256) / 255.0 - 1 / 6) / (1 / 2 - 1 / 6), 0.0, 1.0) * 255).astype(np.uint8)
WRITER_NICE = 10
# The writer may take at most CPU_BUDGET of the process's CPU time, over windows of BUDGET_WINDOW_S: a CPU-bound station
# (its frame rate set by its CPU) loses at most that share of its frames to the tap, the bound being 2%. A station
# that uses less than one core (its trigger or camera sets its frame rate, so the tap costs it no frame) may always
# give the tap CPU_BUDGET of one core: about 2 writes a second of a 1536x864 frame here.
CPU_BUDGET = 0.015
BUDGET_WINDOW_S = 10.0  # the writer thread's niceness: about a tenth of an inspection thread's share of a busy core


@dataclass
class LiveConfig(OutputConfig):
    path: str = ""  # "" = $RUNTIME_DIRECTORY/live (/run/inspectd/live under the unit); outside systemd: no tap unless set
    rate_hz: float = setting(2.0, minimum=0, maximum=RATE_MAX_HZ, fix="frames a second written for the station page, e.g. 2; 0 = off")

    def folder(self) -> Path | None:
        """Where the tap writes, or None: off (rate 0), or no path and no runtime directory."""
        if self.rate_hz == 0:
            return None
        if self.path:
            return Path(self.path)
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        return Path(runtime) / "live" if runtime else None

    def open(self, on_fault: Callable[[Notice], None]) -> Output:
        return LiveTap(self, on_fault)


@dataclass
class Shown:
    """A frame to write: a verdict's (inspecting), or a camera frame with no model (setup mode)."""

    pixels: np.ndarray
    fps: float
    verdict: FrameVerdict | None = None
    roi: list[int] | None = None
    note: str = ""


class LiveTap:
    name = "live tap"

    def __init__(self, config: LiveConfig, on_fault: Callable[[Notice], None] | None = None, mode: str = "inspecting",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = config.folder()
        self.clock = clock
        self.rate_hz, self.mode = config.rate_hz, mode
        self.period = 1.0 / config.rate_hz if config.rate_hz else float("inf")
        self.notify = on_fault or (lambda notice: None)
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create '{self.folder}' ({exc.strerror})", key="live.path",
                                  fix="a folder the station may write (under the unit: \"\" for /run/inspectd/live), or rate_hz = 0") from None
        self.due_at = 0.0
        self.seen: deque[float] = deque(maxlen=FPS_WINDOW)
        self.lock = threading.Condition()
        self.pending: Shown | None = None
        self.seq = 0
        self.busy_s = 0.0  # CPU seconds the writer thread spent writing (bench/web_cost.py: the tap's share of the station's CPU)
        self.window = (time.process_time(), 0.0, clock())  # the process's CPU time, busy_s and the clock when the budget's window began
        self.over_budget = 0  # due frames not written: the tap was over its CPU budget
        self.failing = ""  # the fault record's text while writes fail
        self.writer: threading.Thread | None = None
        self.closed = False

    @property
    def on(self) -> bool:
        return self.folder is not None

    def fps(self) -> float:
        seen = self.seen
        return (len(seen) - 1) / (seen[-1] - seen[0]) if len(seen) > 1 and seen[-1] > seen[0] else 0.0

    def due(self) -> bool:
        """Counts a frame; True when the next one should be written (the loop's whole cost when it is not)."""
        if self.folder is None or self.closed:
            return False
        now = self.clock()
        self.seen.append(now)
        if now < self.due_at:
            return False
        self.due_at = now + self.period
        cpu, (cpu_then, busy_then, then) = time.process_time(), self.window
        if self.busy_s - busy_then > CPU_BUDGET * max(cpu - cpu_then, now - then):
            self.over_budget += 1
            return False
        if now - then > BUDGET_WINDOW_S:
            self.window = (cpu, self.busy_s, now)
        return True

    def verdict(self, verdict: FrameVerdict) -> None:
        if self.due():
            self.offer(Shown(verdict.pixels, self.fps(), verdict=verdict))

    def event(self, kind: EventKind, message: str, **fields: object) -> None:
        pass

    def offer(self, shown: Shown) -> None:
        """Hand a frame to the writer; one still waiting is replaced."""
        with self.lock:
            self.pending = shown
            if self.writer is None:
                self.writer = threading.Thread(target=self._write_loop, name="live-tap", daemon=True)
                self.writer.start()
            self.lock.notify_all()

    def close(self) -> None:
        if self.closed:
            return
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        if self.writer is not None:
            self.writer.join(timeout=2.0)
        if self.folder is not None:
            for name in os.listdir(self.folder) if self.folder.is_dir() else []:
                if is_tap_file(name):  # its own names only: never another .jpg or .png put in its folder
                    try:
                        os.unlink(self.folder / name)
                    except OSError:
                        pass

    # ---------------------------------------------------------------- the writer thread

    def _write_loop(self) -> None:
        try:  # best effort: when the cores are busy the scheduler serves the inspection first (lowering one's priority needs no privilege)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        except (OSError, AttributeError):
            pass
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.pending is not None or self.closed)
                if self.closed:
                    return
                shown, self.pending = self.pending, None
            self.deliver(shown)  # type: ignore[arg-type]

    def deliver(self, shown: Shown) -> None:
        """``write``, within the tap's fault boundary: one fault record when writes start failing, one when they work again."""
        started = time.thread_time()
        try:
            self.write(shown)
        except Exception as exc:  # noqa: BLE001 - whatever fails here, the station inspects on
            if not self.failing:
                self.failing = f"live tap: cannot write into {self.folder}: {describe(exc)}; the station page shows no live frame until it can"
                self.notify(Notice(EventKind.FAULT, self.failing, {"fault": Fault.OUTPUT, "error": type(exc).__name__}))
            return
        finally:
            self.busy_s += time.thread_time() - started
        if self.failing:
            self.failing = ""
            self.notify(Notice(EventKind.START, f"live tap: writing into {self.folder} again", {"recovered": Fault.OUTPUT}))

    def write(self, shown: Shown) -> LiveState:
        """One generation: the frame, its heatmap, then live.json naming them; the oldest generation deleted."""
        assert self.folder is not None
        self.seq += 1
        seq, pixels, verdict = self.seq, shown.pixels, shown.verdict
        height, width = pixels.shape[:2]
        small = scaled(pixels)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {pixels.shape} frame as JPEG")
        write_atomically(self.folder, frame_name(seq), jpeg.tobytes())
        state = LiveState(seq=seq, time=time.time(), mode=self.mode, frame=frame_name(seq), frame_size=(width, height),
                          shown_size=(small.shape[1], small.shape[0]), roi=shown.roi, aids=aids(pixels, shown.fps), rate_hz=self.rate_hz,
                          note=shown.note)
        if verdict is not None:
            inspection = verdict.inspection
            write_atomically(self.folder, heatmap_name(seq), heatmap_png(inspection.model_map, verdict.threshold))
            top, left, bottom, right = inspection.region
            state.heatmap, state.region = heatmap_name(seq), [top / height, left / width, bottom / height, right / width]
            state.verdict = verdict.record().to_json()
        write_atomically(self.folder, STATE_FILE, json.dumps(state.to_json(), allow_nan=False).encode())
        for old in (frame_name(seq - KEEP), heatmap_name(seq - KEEP)):
            try:
                os.unlink(self.folder / old)
            except FileNotFoundError:
                pass
        return state


def scaled(pixels: np.ndarray) -> np.ndarray:
    """At most SHOWN_MAX_SIDE pixels a side: halved (a Gaussian pyramid step) while more than twice that, then bilinear.
    A preview, not the model's input: about the look of INTER_AREA at a seventh of its cost at 1536x864."""
    while max(pixels.shape[:2]) > 2 * SHOWN_MAX_SIDE:
        pixels = cv2.pyrDown(pixels)
    height, width = pixels.shape[:2]
    factor = SHOWN_MAX_SIDE / max(height, width)
    if factor >= 1:
        return pixels
    return cv2.resize(pixels, (max(round(width * factor), 1), max(round(height * factor), 1)), interpolation=cv2.INTER_LINEAR)


def aids(pixels: np.ndarray, fps: float) -> Aids:
    """Focus, exposure and clipping, on the frame's own grey levels (before scaling or compression)."""
    gray = pixels if pixels.ndim == 2 else pixels[:, :, 0] if pixels.shape[2] == 1 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    _, deviation = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S, ksize=3))
    # Exposure from every other row and column: the same shares to a fraction of a percent, at a quarter of the cost.
    counts = cv2.calcHist([np.ascontiguousarray(gray[::2, ::2])], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    total = max(int(counts.sum()), 1)
    return Aids(sharpness=float(deviation[0, 0]) ** 2, histogram=[int(n) for n in counts.reshape(HISTOGRAM_BINS, -1).sum(axis=1)],
                clipped_dark=float(counts[: CLIPPED_DARK + 1].sum()) / total, clipped_bright=float(counts[CLIPPED_BRIGHT:].sum()) / total,
                mean=float(np.dot(np.arange(256), counts)) / total, fps=round(fps, 2))


def heatmap_png(model_map: np.ndarray, threshold: float) -> bytes:
    """The map on the archive's fixed scale (runtime.heatmap): blue 0, green the threshold, red twice the threshold or more;
    transparent where it is far below the threshold (under a third of it), opaque from the threshold up, so the frame shows
    through where nothing is suspect."""
    levels = cv2.convertScaleAbs(np.nan_to_num(model_map, nan=0.0, posinf=2 * threshold), alpha=255.0 / (2.0 * threshold))
    colours = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    ok, png = cv2.imencode(".png", cv2.merge([*cv2.split(colours), cv2.LUT(levels, ALPHA)]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("OpenCV could not encode the heatmap")
    return png.tobytes()
