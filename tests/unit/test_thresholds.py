"""The threshold for a target false-reject rate keeps its stated confidence, checked on synthetic good scores whose
true quantile is known (hypothesis draws the distribution, the number of images, the target and the confidence)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation import thresholds
from inspectd.daemon.evaluation.thresholds import MARGIN, NOISE, for_false_reject_rate, images_needed

RUNS = 100  # samples per example: the coverage is a share of these


def gumbel_share_above(value: float, location: float, scale: float) -> float:
    return -math.expm1(-math.exp(-(value - location) / scale))


def slack(confidence: float, runs: int = RUNS) -> float:
    """How far a coverage of ``runs`` samples may fall below ``confidence`` by chance: 3.5 standard errors."""
    return 3.5 * math.sqrt(confidence * (1 - confidence) / runs)


@given(location=st.floats(0, 100), scale=st.floats(0.5, 30), n=st.integers(8, 200), target=st.sampled_from([0.01, 0.02, 0.05, 0.1]),
       confidence=st.sampled_from([0.8, 0.9, 0.95]), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=8)
@example(location=64.0, scale=0.5, n=179, target=0.05, confidence=0.8, seed=0)  # spread over 1% of the level: 0.97 with a margin of 0.1%
def test_gumbel_scores_the_bound_holds_as_often_as_it_says(location, scale, n, target, confidence, seed):
    """Gumbel scores (the fit's own law): the share of good parts above the threshold is at most the target in about
    ``confidence`` of the samples: not less (a broken promise), and not far more (a needlessly high threshold)."""
    rng = np.random.default_rng(seed)
    covered, expected = [], []
    for _ in range(RUNS):
        choice = for_false_reject_rate(rng.gumbel(location, scale, n), target, confidence=confidence)
        share = gumbel_share_above(choice.value, location, scale)
        covered.append(share <= target)
        expected.append(choice.line.expected)
    assert confidence - slack(confidence) <= np.mean(covered) <= confidence + slack(confidence) + 0.02
    assert all(0 < e <= target for e in expected)


@given(n=st.integers(150, 800), target=st.sampled_from([0.05, 0.1]), confidence=st.sampled_from([0.8, 0.9]),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=4)
def test_any_scores_with_enough_images_the_order_statistic_holds(n, target, confidence, seed):
    """Scores with a short upper tail are far from Gumbel; where the images are enough for a distribution-free bound
    resting on ROBUST_RANK of them (or the fit is contradicted), the order statistic is taken; either way the promise is kept."""
    rng = np.random.default_rng(seed)
    robust = thresholds._largest_rank(n, target, confidence) >= thresholds.ROBUST_RANK
    covered = []
    for _ in range(RUNS // 2):
        good = rng.uniform(0.0, 1.0, n) ** 0.25 * 10 + 1  # a short upper tail
        choice = for_false_reject_rate(good, target, confidence=confidence)
        assert choice.method == "order-statistic" or not robust
        share = 1.0 - ((choice.value - 1) / 10) ** 4
        covered.append(share <= target)
    assert np.mean(covered) >= confidence - slack(confidence, RUNS // 2)


@given(n=st.integers(1, 5000), target=st.floats(1e-4, 0.5), confidence=st.floats(0.5, 0.99))
def test_the_rank_is_the_largest_the_binomial_bound_allows(n, target, confidence):
    if n < images_needed(target, confidence):
        return
    j = thresholds._largest_rank(n, target, confidence)
    assert thresholds._at_least(j, n, target) >= confidence - 1e-9
    assert j == n or thresholds._at_least(j + 1, n, target) < confidence + 1e-9


def test_a_heavy_tail_falls_back_to_the_order_statistic():
    """Scores with a Pareto tail contradict a Gumbel fit: with enough images the distribution-free bound is used and
    keeps the promise; with too few, the choice says the fit is optimistic."""
    rng = np.random.default_rng(3)
    covered, fallen_back = [], []
    for _ in range(30):
        good = 10 + rng.pareto(1.5, 1000)
        choice = for_false_reject_rate(good, 0.01, confidence=0.9)
        covered.append((1 + choice.value - 10) ** -1.5 <= 0.01)
        fallen_back.append(choice.method == "order-statistic" and "not a Gumbel fit" in choice.rests_on)
    assert np.mean(fallen_back) >= 0.9 and np.mean(covered) >= 0.9 - slack(0.9, 30)
    few = for_false_reject_rate(np.concatenate([rng.gumbel(10, 1, 200), np.linspace(16, 40, 20)]), 0.01)
    assert few.method == "gumbel-fit" and "optimistic" in few.warning


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 400))
@settings(max_examples=30)
def test_no_good_score_sits_on_the_threshold(seed, n):
    """Every good score is at least MARGIN of the threshold away from it (NOISE where the scores' spread is narrow): a
    precision's rounding cannot decide an image."""
    good = np.round(np.random.default_rng(seed).gumbel(20, 3, n), 1)  # ties included
    choice = for_false_reject_rate(good, 0.01)
    assert np.all(np.abs(good - choice.value) >= MARGIN * choice.value * 0.999)
    assert choice.false_reject.count == int((good > choice.value).sum()) and choice.false_reject.total == n
    narrow = np.random.default_rng(seed).gumbel(64, 0.2, n)  # spread over less than 1% of their level
    kept_off = for_false_reject_rate(narrow, 0.01).value
    assert np.all(np.abs(narrow - kept_off) >= NOISE * kept_off * 0.999)


def test_the_choice_says_what_it_rests_on_and_the_interval():
    choice = for_false_reject_rate(np.random.default_rng(0).gumbel(30, 2, 60), 0.01, np.array([40.0, 50.0, 20.0]))
    text = "\n".join(choice.lines("good images held out of fitting"))
    assert "a Gumbel fit of 60 good images" in text and "in-sample: " in text and "each with 90% confidence" in text
    assert choice.line.low <= choice.line.expected <= choice.line.high <= 0.01 + 1e-9
    assert choice.catch.total == 3 and not choice.supported
    record = choice.record()
    assert record.method == "gumbel-fit" and record.confidence == 0.9 and record.false_reject_bounds[1] == pytest.approx(choice.line.high)


@pytest.mark.parametrize("good, target, says", [
    (np.full(40, 17.25), 0.01, "all 40 good images score 17.2500"),
    (np.arange(4.0), 0.01, "4 good images cannot set a threshold"),
    (np.arange(50.0), 1e-300, "is not between 1e-06 and 1"),
    (np.arange(50.0), 1.0, "is not between 1e-06 and 1"),
])
def test_what_cannot_set_a_threshold_is_one_line(good, target, says):
    with pytest.raises(InspectdError, match=says):
        for_false_reject_rate(good, target)
