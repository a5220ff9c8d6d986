"""``[drift]``: the PASS scores watched against the model folder's normal scores, while inspecting.

A camera knocked out of place, a lamp that ages or a window's daylight moves every score the
same way long before parts start to be rejected for it. The station keeps the last ``window``
PASS scores and compares their mean with the normal scores of the folder's calibration good
images (``normal_scores`` in inspectd.json), in their standard deviations:

    shift = (mean of the window - normal mean) / normal std

When ``|shift|`` goes beyond ``limit_sigma`` (the window full), one warning record says so
(``EventKind.DRIFT``) and STATUS shows ``drift +2.1σ`` while it lasts; when it is back within
``CLEAR_FRACTION`` of the limit, one notice says it is over (``EventKind.DRIFT_OVER``). Never
a record per frame. REJECT scores are left out: a defect is not a drift. A PASS is counted
whatever decided it (as ``inspectd report`` counts them), so the daemon and the report speak
of the same scores.

A model folder without normal scores (exported without calibration good images), or with a
spread of 0, cannot be compared with: there is no watch, and ``inspectd check`` says why.

    >>> watch = DriftWatch(normal_mean=10.0, normal_std=2.0, window=3, limit_sigma=1.5)
    >>> [watch.add(score) for score in (14.0, 14.0, 14.0)][-1]
    DriftChange(alarmed=True, shift=2.0, window_mean=14.0)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from inspectd.daemon.schema import NormalScores
from inspectd.daemon.station.settings import Section, setting

WINDOW = 200
WINDOW_MIN = 10  # fewer PASS frames are one part seen a few times, not a sustained shift
WINDOW_MAX = 100_000  # 83 minutes at 20 Hz
# The limit is an effect size, in standard deviations of the normal scores themselves, not in standard errors of the
# window's mean. Sampling noise alone is small: the mean of 200 PASS scores moves by about sigma/sqrt(200) = 0.07 sigma,
# so a 1.5 sigma limit is some 20 standard errors away (and 7 at the smallest window, 10). What does move a window on
# an unchanged station is larger and is not noise that more frames would average out: the normal statistics are
# themselves an estimate from the calibration images (their mean is uncertain by sigma/sqrt(count): 0.32 sigma for the
# demo folder's 10), the line's parts are not those images, and consecutive frames of one part are alike. The demo
# station, unchanged, sits at +0.6 sigma (its 200-frame windows between +0.58 and +0.68 over 300 fresh frames), so a
# limit near 1 sigma would alarm on a healthy station, as a limit of 3 standard errors (0.2 sigma) would all day. At 1.5
# sigma it alarms for the demo's lamp +10 grey levels (+1.9 sigma, 2 false rejects in 300 frames) and stays quiet at +5
# (+0.9 sigma): before false rejects, not after. A folder whose threshold is close to its normal scores (a 1%
# false-reject threshold is about 2.3 sigma up) rejects sooner; lower limit_sigma there.
LIMIT_SIGMA = 1.5
CLEAR_FRACTION = 0.5  # hysteresis: the alarm ends once |shift| is back within half the limit, not at the first frame under it


@dataclass
class DriftConfig(Section):
    enabled: bool = True
    window: int = setting(WINDOW, minimum=WINDOW_MIN, maximum=WINDOW_MAX,
                          fix=f"the number of PASS frames averaged, e.g. {WINDOW} (fewer than {WINDOW_MIN} is one part's noise, not a drift)")
    limit_sigma: float = setting(LIMIT_SIGMA, above=0, maximum=100,
                                 fix=f"the alarm's shift in standard deviations of the normal scores, e.g. {LIMIT_SIGMA}")


@dataclass(frozen=True)
class DriftChange:
    """The alarm starts (``alarmed``) or ends, at this shift and window mean."""

    alarmed: bool
    shift: float
    window_mean: float


class DriftWatch:
    """The last ``window`` PASS scores against the normal mean and std. Pure arithmetic: the station records changes."""

    def __init__(self, normal_mean: float, normal_std: float, window: int = WINDOW, limit_sigma: float = LIMIT_SIGMA) -> None:
        if not (math.isfinite(normal_mean) and math.isfinite(normal_std) and normal_std > 0):
            raise ValueError(f"normal scores {normal_mean} ± {normal_std} cannot measure a shift")
        self.normal_mean = normal_mean
        self.normal_std = normal_std
        self.window = window
        self.limit_sigma = limit_sigma
        self.scores: deque[float] = deque(maxlen=window)
        self.alarmed = False

    @property
    def window_mean(self) -> float | None:
        """None until the window is full: a part-filled window says nothing sustained."""
        if len(self.scores) < self.window:
            return None
        return math.fsum(self.scores) / len(self.scores)

    @property
    def shift(self) -> float | None:
        """The window mean's distance from the normal mean, in normal standard deviations (None until full)."""
        mean = self.window_mean
        return None if mean is None else (mean - self.normal_mean) / self.normal_std

    def add(self, score: float) -> DriftChange | None:
        """One PASS score (a non-finite one is ignored); the change of alarm it brings, if any."""
        if not math.isfinite(score):
            return None
        self.scores.append(score)
        shift = self.shift
        if shift is None:
            return None
        if not self.alarmed and abs(shift) > self.limit_sigma:
            self.alarmed = True
        elif self.alarmed and abs(shift) <= self.limit_sigma * CLEAR_FRACTION:
            self.alarmed = False
        else:
            return None
        return DriftChange(self.alarmed, shift, self.window_mean)  # type: ignore[arg-type]


def drift_watch(config: DriftConfig, normal: NormalScores | None) -> tuple[DriftWatch | None, str]:
    """The watch ``config`` asks for on a folder with ``normal`` scores, or None; and one line saying which and why."""
    if not config.enabled:
        return None, "drift: off ([drift] enabled = false)"
    if normal is None:
        return None, ("drift: off: the model folder has no normal_scores (exported without calibration good images); "
                      "export it with --calibration DIR holding good images to watch for drift")
    if not (math.isfinite(normal.mean) and math.isfinite(normal.std) and normal.std > 0):
        return None, (f"drift: off: the model folder's normal_scores have no spread (std {normal.std:g} over {normal.count} "
                      "images): no shift can be measured; export it with more calibration good images")
    watch = DriftWatch(normal.mean, normal.std, config.window, config.limit_sigma)
    return watch, (f"drift: watching the last {config.window} PASS scores, alarm beyond ±{config.limit_sigma:g}σ of the normal "
                   f"scores ({normal.mean:.2f} ± {normal.std:.2f} over {normal.count} images)")
