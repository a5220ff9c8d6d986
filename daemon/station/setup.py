"""Setup mode (``inspectd setup``, inspectd-setup.service): the camera through the station's own source and ROI,
into the live tap, with no model loaded, so that the integrator can aim, focus and light the part on the
station page before there is anything to train.

The whole camera frame is shown, with the ROI drawn by the page (``roi`` in the tap), and the setup aids
(sharpness, exposure, clipping, frame rate) measured on it. Nothing is judged and nothing is recorded in
the journal; the reject and ready lines are not taken. A replayed folder (``once``, ``loop``) is shown in a
loop at the tap's rate; a watched folder is refused (showing it would move the parts out of it).
"""

from __future__ import annotations

import sys
import threading

from inspectd.daemon.errors import ConfigError, SourceError
from inspectd.daemon.station.config import Config
from inspectd.daemon.station.outputs.live import LiveTap, Shown
from inspectd.daemon.station.sources import BadFrame, SourceEnded, SourceFault

READ_TIMEOUT_S = 0.5
RETRY_S = 1.0


def check_setup(config: Config) -> LiveTap:
    """The tap setup mode writes into, or a ConfigError saying why it cannot run."""
    if getattr(config.source, "mode", None) == "watch":
        raise ConfigError("is 'watch': setup mode would take the parts out of the watched folder", file=config.file, key="source.mode",
                          fix='set up with a camera, or a folder replayed with mode = "loop"')
    live = config.live
    if not live.enabled or live.folder() is None:
        why = "enabled = false" if not live.enabled else "rate_hz = 0" if live.rate_hz == 0 else "no path and no $RUNTIME_DIRECTORY"
        raise ConfigError(f"the live tap is off ({why}): setup mode has nowhere to show the camera", file=config.file, key="live",
                          fix="run it as inspectd-setup.service (systemctl start inspectd-setup), or set [live] path and a rate_hz above 0")
    return LiveTap(live, mode="setup")


def run_setup(config: Config, stop: threading.Event, frames: int | None = None) -> int:
    """Shows the camera until ``stop`` is set (or ``frames`` frames were read); returns 0."""
    tap = check_setup(config)
    source_config, roi = config.source, config.source.valid_roi()
    replay = source_config.kind == "directory"
    print(f"inspectd setup: the {source_config.kind} source" + (f" through ROI {roi}" if roi else " (no ROI)") +
          f" into the live tap {tap.folder} at {tap.rate_hz:g}/s, no model loaded; open the station page (inspectd web)",
          file=sys.stderr, flush=True)
    source, note, read = None, "", 0
    try:
        while not stop.is_set() and (frames is None or read < frames):
            if source is None:
                try:
                    source = source_config.open_kind()
                except SourceError as exc:
                    note = f"the source cannot be opened: {exc}; retrying"
                    print(f"inspectd setup: {note}", file=sys.stderr, flush=True)
                    stop.wait(RETRY_S)
                    continue
            try:
                frame = source.read(READ_TIMEOUT_S)
            except SourceEnded:
                source.close()
                source = None  # a replayed folder: from its first image again
                continue
            except BadFrame as exc:
                note = f"a frame could not be read: {exc}"
                continue
            except SourceFault as exc:
                note = f"the source failed: {exc}; reopening"
                print(f"inspectd setup: {note}", file=sys.stderr, flush=True)
                source.close()
                source = None
                stop.wait(RETRY_S)
                continue
            if frame is None:
                continue
            read += 1
            height, width = frame.pixels.shape[:2]
            outside = roi is not None and (roi[0] + roi[2] > width or roi[1] + roi[3] > height)
            if tap.due():
                text = f"source.roi {roi} reaches outside the {width}x{height} frame: the station would refuse it" if outside else note
                tap.offer(Shown(frame.pixels, tap.fps(), roi=roi, note=text))
                note = ""
            if replay:
                stop.wait(tap.period / 2)  # a folder reads as fast as it decodes: no faster than the page needs
    finally:
        if source is not None:
            source.close()
        tap.close()
    return 0

