"""Thresholds for production: the false-reject rate the line accepts, with a stated confidence.

The F1-optimal threshold balances errors on the test images, which is rarely what a line
wants: with 20 good and 50 defective boards it rejected 11 good ones of 20. A line states the
false-reject rate it can afford (1% by default) and wants to know what that catches.

A threshold is set on good images the model was not fitted on, as a **one-sided tolerance
bound**: with the stated confidence (90% by default), at most the target share of new good
parts scores above it. Two estimators, the first wherever the images allow it:

- **order statistic** (distribution-free): the j-th highest of n good scores, j the largest
  for which P(Binomial(n, target) >= j) >= confidence. Whatever the scores' distribution,
  the share of good parts above the j-th highest of n is Beta(j, n - j + 1): the bound is
  exact. It needs n >= log(1 - confidence) / log(1 - target) images (230 for 1% at 90%).
- **Gumbel fit** (fewer images): a PaDiM score is the maximum of an anomaly map, and maxima
  follow the Gumbel law; it is fitted by L-moments and the bound comes from the fit's pivot
  ((quantile - fitted quantile) / fitted scale has one distribution for every location and
  scale, drawn here once per n with a fixed seed): exact when the scores are Gumbel,
  conservative for lighter tails (normal), optimistic for heavier ones. It extrapolates,
  and the choice says so (``warning``; ``calibrate`` takes it only with ``--accept-estimate``).

Either way the choice carries the false-reject rate to expect on the line (``line``: its
median and its bounds at the stated confidence), the images it rests on, and the in-sample
count (good images above it among those that set it), which is never a figure for the line.
README "Scores and thresholds" gives the measured coverage.

The scores are what the decision rule compares with the threshold (``runtime.decision``: the
raw score, or with a minimum defect area ``Rule.critical_score``): the station's own rule.

    >>> good = np.random.default_rng(0).gumbel(20.0, 2.0, 300)   # the true 99% quantile: 29.2
    >>> choice = for_false_reject_rate(good, 0.01)
    >>> choice.method, round(choice.value, 1), round(choice.line.high, 4), choice.false_reject.count
    ('gumbel-fit', 30.0, 0.01, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from inspectd.daemon import schema
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation.metrics import Rate, auroc

DEFAULT_FALSE_REJECT_RATE = 0.01
DEFAULT_CONFIDENCE = 0.9
SMALLEST_RATE = 1e-6  # below one in a million, no set of pictures says anything
MIN_GOOD_IMAGES = 5  # a fit of fewer says nothing about a tail
MARGIN = 0.001  # of the threshold: no image's score sits within it (f32 scores differ from torch by about 1e-4 of it) ...
MARGIN_OF_SPREAD = 0.01  # ... unless that is more than this share of the good scores' spread (standard deviation) ...
NOISE = 2e-4  # ... and never less than this share of the threshold: twice the f32 / torch difference
ROBUST_RANK = 10  # the order statistic is used when it rests on at least this many of the highest scores (or the fit fails)
TAIL_CHECK = 0.01  # a Gumbel fit is contradicted when this few fits would leave as many good images above their bound
PIVOT_DRAWS = 8000
EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class LineRate:
    """The false-reject rate new good parts will see at a threshold, as the good images that set it say."""

    expected: float  # the median of its confidence distribution
    low: float  # at least this, with ``confidence``
    high: float  # at most this, with ``confidence``
    confidence: float

    def __str__(self) -> str:
        return (f"{_percent(self.expected)} expected; at most {_percent(self.high)} and at least {_percent(self.low)}, "
                f"each with {self.confidence:.0%} confidence")


@dataclass(frozen=True)
class Choice:
    value: float
    method: str  # order-statistic | gumbel-fit | f1
    target: float | None  # the false-reject rate asked for
    false_reject: Rate  # of the good images that set it, at ``value``: in-sample
    catch: Rate | None  # of the defective images given, where there are some
    auroc: float | None
    warning: str | None  # why the choice rests on an assumption, when it does
    line: LineRate | None = None  # the false-reject rate on new good parts (None for F1: chosen on both kinds)
    rests_on: str = ""  # the images the value rests on, in words

    @property
    def supported(self) -> bool:
        return self.warning is None

    @property
    def f1(self) -> float | None:
        """F1 at ``value`` on the images it was chosen on; None without defective images."""
        if self.catch is None:
            return None
        caught, missed = self.catch.count, self.catch.total - self.catch.count
        return 2 * caught / (2 * caught + self.false_reject.count + missed) if caught else 0.0

    def record(self, note: str | None = None) -> schema.Threshold:
        """The model folder's threshold entry for this choice (``inspectd.json`` threshold): export and calibrate write it."""
        counts = {"normal_images": self.false_reject.total, "anomalous_images": self.catch.total if self.catch else 0}
        if self.method == "f1":
            return schema.Threshold(value=self.value, source="calibration-f1", f1=self.f1, note=note, **counts)
        assert self.line is not None
        return schema.Threshold(value=self.value, source="calibration-frr", target_false_reject_rate=self.target, method=self.method,
                                confidence=self.line.confidence, false_reject_expected=self.line.expected,
                                false_reject_bounds=(self.line.low, self.line.high), note=note, **counts)

    def lines(self, good: str = "good images", defective: str = "defective images") -> list[str]:
        """What train and calibrate print; ``good`` and ``defective`` name the images given (their role)."""
        if self.method == "f1":
            lines = [f"threshold {self.value:.4f} (F1-optimal on {self.false_reject.total} {good} and "
                     f"{self.catch.total if self.catch else 0} {defective})",
                     f"  false rejects  {self.false_reject} of the {good} (in-sample: they set it)"]
            if self.catch is not None:
                lines.append(f"  caught         {self.catch} of the {defective} (in-sample: they set it)")
        else:
            assert self.line is not None and self.target is not None
            lines = [f"threshold {self.value:.4f} for at most {_percent(self.target)} false rejects with {self.line.confidence:.0%} confidence",
                     f"  rests on       {self.rests_on}",
                     f"  false rejects  on the line: {self.line}",
                     f"                 in-sample: {self.false_reject.count} of the {self.false_reject.total} {good} that set it "
                     f"score above it"]
            if self.catch is not None:
                lines.append(f"  caught         {self.catch} of the {defective} (they played no part in the threshold)")
        if self.auroc is not None:
            lines.append(f"  image AUROC    {self.auroc:.4f}")
        if self.warning:
            lines.append(f"  warning: {self.warning}")
        return lines


def images_needed(target: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest good images for a distribution-free bound: the highest of n is above the target's quantile with ``confidence``."""
    return int(math.ceil(math.log1p(-confidence) / math.log1p(-target)))


def check_target(target: float, confidence: float = DEFAULT_CONFIDENCE) -> None:
    if not SMALLEST_RATE <= target < 1:
        raise InspectdError(f"false-reject rate {target:g} is not between {SMALLEST_RATE:g} and 1",
                            fix="ask for a share of good parts such as 0.01 for 1%; below one in a million no set of pictures can show it")
    if not 0.5 <= confidence < 1:
        raise InspectdError(f"confidence {confidence:g} is not between 0.5 and 1", fix="e.g. 0.9 for 90%")


def for_false_reject_rate(good: np.ndarray, target: float = DEFAULT_FALSE_REJECT_RATE, defective: np.ndarray | None = None,
                          confidence: float = DEFAULT_CONFIDENCE) -> Choice:
    """The threshold for at most ``target`` false rejects with ``confidence``, from the scores of good images held out of fitting."""
    check_target(target, confidence)
    good = np.sort(np.asarray(good, dtype=np.float64))[::-1]
    if not np.isfinite(good).all():
        raise ValueError("good scores must be finite")
    if good.size < MIN_GOOD_IMAGES:
        raise InspectdError(f"{good.size} good images cannot set a threshold", fix=f"use at least {MIN_GOOD_IMAGES} (50 or more is better)")
    if good[0] == good[-1]:
        raise InspectdError(f"all {good.size} good images score {good[0]:.4f}: they are the same picture (a blank or uniform frame?) "
                            "and show nothing of how good parts vary", fix="use pictures of real good parts")
    needed = images_needed(target, confidence)
    value, line, rests_on = _gumbel_bound(good, target, confidence)
    heavier = _heavier_tail(good)
    if good.size >= needed and (heavier or _largest_rank(good.size, target, confidence) >= ROBUST_RANK):
        value, line, rests_on = _order_statistic(good, target, confidence)
        if heavier:
            rests_on += f"; not a Gumbel fit: {heavier}"
        return _choice(value, "order-statistic", target, good, defective, None, line, rests_on)
    if good.size < needed:
        warning = (f"{good.size} good images are too few for a distribution-free bound on {_percent(target)} at {confidence:.0%} "
                   f"confidence ({needed} needed): the threshold extrapolates a Gumbel fit of their scores; collect more good images "
                   "(`inspectd collect`) to rest it on them alone")
        if heavier:
            warning = (f"the good scores' tail is heavier than a Gumbel's ({heavier}): the fit is optimistic, and the images are too "
                       f"few ({needed} needed) for a distribution-free bound; look at the highest-scoring good images (defects among "
                       "them?) and collect more")
    else:
        warning = None
    return _choice(value, "gumbel-fit", target, good, defective, warning, line, rests_on)


def _heavier_tail(good: np.ndarray) -> str | None:
    """Whether the good scores' upper tail is heavier than their Gumbel fit says, in words, or None.

    At each tail share p of 10%, 5%, 2%, ... (down to one image), the images above the fit's (1 - p) quantile are
    counted; too many at any level (binomial tail below TAIL_CHECK, split over the levels) contradicts the fit."""
    location, scale = gumbel_fit(good[None, ::-1])
    levels = [p for p in (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001) if good.size * p >= 1]
    for p in levels:
        quantile = float(location[0] + scale[0] * -math.log(-math.log1p(-p)))
        above = int((good > quantile).sum())
        if _at_least(above, good.size, p) < TAIL_CHECK / len(levels):
            return f"{above} of {good.size} score above the fit's {1 - p:.1%} quantile, where about {good.size * p:.0f} would"
    return None


def _order_statistic(good: np.ndarray, target: float, confidence: float) -> tuple[float, LineRate, str]:
    """``good`` sorted highest first, at least ``images_needed`` of them."""
    n = good.size
    j = _largest_rank(n, target, confidence)
    at = float(good[j - 1])
    higher = good[: j - 1][good[: j - 1] > at]
    own = _margin(at, float(np.std(good)))
    margin = own if higher.size == 0 else min(own, (float(higher[-1]) - at) / 2.0)
    line = LineRate(expected=_beta_quantile(0.5, j, n), low=_beta_quantile(1 - confidence, j, n), high=_beta_quantile(confidence, j, n),
                    confidence=confidence)
    return at + margin, line, f"{n} good images: their {_ordinal(j)} highest score (order statistic, binomial bound)"


def _largest_rank(n: int, target: float, confidence: float) -> int:
    """The largest j with P(Binomial(n, target) >= j) >= confidence (at least 1 when n >= images_needed)."""
    below = 0.0  # P(Binomial < j)
    j = 0
    while True:
        below += _binomial_pmf(j, n, target)
        if 1.0 - below < confidence or j + 1 > n:
            return max(j, 1)
        j += 1


def _binomial_pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0 if i == 0 else 0.0
    log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    return math.exp(log)


def _at_least(j: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= j) = P(Beta(j, n - j + 1) <= p)."""
    return max(0.0, 1.0 - sum(_binomial_pmf(i, n, p) for i in range(j)))


def _beta_quantile(level: float, j: int, n: int) -> float:
    """The ``level`` quantile of Beta(j, n - j + 1): the share of good parts above the j-th highest of n."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2.0
        if _at_least(j, n, middle) < level:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def _gumbel_bound(good: np.ndarray, target: float, confidence: float) -> tuple[float, LineRate, str]:
    location, scale = gumbel_fit(good[None, ::-1])
    draws_location, draws_scale = _pivot_draws(good.size)
    quantile = -math.log(-math.log1p(-target))  # the standard Gumbel's at 1 - target
    standardised = float(np.quantile((quantile - draws_location) / draws_scale, confidence))
    value = _off_scores(float(location[0] + standardised * scale[0]), good)
    # The share of good parts above ``value``: 1 - G(A + s B) over the pivot's draws (A, B).
    above = -np.expm1(-np.exp(-(draws_location + standardised * draws_scale)))
    line = LineRate(expected=float(np.quantile(above, 0.5)), low=float(np.quantile(above, 1 - confidence)),
                    high=float(np.quantile(above, confidence)), confidence=confidence)
    return value, line, f"a Gumbel fit of {good.size} good images' scores (location {location[0]:.4f}, scale {scale[0]:.4f})"


def _off_scores(value: float, scores: np.ndarray) -> float:
    """``value``, or moved up until no score lies within its margin (moving up only lowers the false-reject rate)."""
    spread = float(np.std(scores))
    for _ in range(scores.size):
        margin = _margin(value, spread)
        near = scores[np.abs(scores - value) < margin]
        if near.size == 0:
            break
        value = float(near.max()) + margin
    return value


def _margin(value: float, spread: float) -> float:
    """How far a threshold keeps from every good score, so that a precision's rounding cannot decide an image: MARGIN of
    it, but not more than MARGIN_OF_SPREAD of the scores' spread (good scores spread over 1% of their level would have
    a margin of an eighth of their spread: a needlessly high threshold, far fewer false rejects than asked, and fewer
    defects caught), and never less than NOISE of it. ``spread``: the good scores' standard deviation."""
    return max(NOISE * abs(value), min(MARGIN * abs(value), MARGIN_OF_SPREAD * spread))


def gumbel_fit(ascending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel (maxima) location and scale by L-moments, for each row of ``ascending`` (rows sorted low to high)."""
    n = ascending.shape[-1]
    b0 = ascending.mean(axis=-1)
    b1 = (ascending * (np.arange(n) / (n - 1))).mean(axis=-1)
    scale = (2.0 * b1 - b0) / math.log(2.0)
    return b0 - EULER_GAMMA * scale, scale


@lru_cache(maxsize=16)
def _pivot_draws(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(location, scale) fitted to PIVOT_DRAWS samples of n standard Gumbel scores: the fit's own error, the same for every
    location and scale. A fixed seed: the same images give the same threshold."""
    rng = np.random.default_rng(20240618)
    rows = max(1, 4_000_000 // n)
    locations, scales = [], []
    for start in range(0, PIVOT_DRAWS, rows):
        sample = np.sort(rng.gumbel(size=(min(rows, PIVOT_DRAWS - start), n)), axis=1)
        location, scale = gumbel_fit(sample)
        locations.append(location)
        scales.append(scale)
    return np.concatenate(locations), np.concatenate(scales)


def f1_optimal(good: np.ndarray, defective: np.ndarray) -> Choice:
    """The threshold with the best F1, midway between two scores (no image sits on it)."""
    scores = np.concatenate([good, defective])
    labels = np.concatenate([np.zeros(len(good), bool), np.ones(len(defective), bool)])
    distinct = np.unique(scores)
    candidates = np.concatenate(([distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2.0))
    best, best_f1 = float(candidates[0]), -1.0
    for threshold in candidates:
        predicted = scores > threshold
        f1 = 2.0 * np.sum(predicted & labels) / (np.sum(predicted) + np.sum(labels))
        if f1 > best_f1:
            best, best_f1 = float(threshold), float(f1)
    return _choice(best, "f1", None, np.asarray(good), np.asarray(defective), None, None,
                   f"{len(good)} good and {len(defective)} defective images (F1-optimal)")


def _choice(value: float, method: str, target: float | None, good: np.ndarray, defective: np.ndarray | None, warning: str | None,
            line: LineRate | None, rests_on: str) -> Choice:
    has_defects = defective is not None and len(defective) > 0
    catch = Rate(int((np.asarray(defective) > value).sum()), len(defective)) if has_defects else None
    area = auroc(np.concatenate([good, defective]), np.concatenate([np.zeros(len(good), bool), np.ones(len(defective), bool)])) if has_defects else None
    return Choice(value, method, target, Rate(int((good > value).sum()), len(good)), catch, area, warning, line, rests_on)


def _percent(share: float) -> str:
    return f"{share:.2%}" if share >= 0.0001 else f"{share:.2g}"


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"
