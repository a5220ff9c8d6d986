"""How the threshold estimators keep their promise: synthetic good scores with a known quantile.

    python bench/threshold_coverage.py [--runs 400] [--target 0.01] [--confidence 0.9]

For each score distribution and number of good images, ``--runs`` samples are drawn; each
sets a threshold, and the true share of good parts above it (the false-reject rate the line
would see) is known exactly. Printed per row: how often that share is at most the target
(the coverage; the promise is ``--confidence``), its median and 90th percentile, and the same
for the estimator before issue 18 (midway between two good scores, or a normal fit under
1/target images), which promised the target itself.
"""

from __future__ import annotations

import argparse
import math
from statistics import NormalDist

import numpy as np

from inspectd.daemon.evaluation.thresholds import for_false_reject_rate

# (name, sampler(rng, n), share above t)
DISTRIBUTIONS = {
    "gumbel": (lambda rng, n: rng.gumbel(10.0, 2.0, n), lambda t: -math.expm1(-math.exp(-(t - 10.0) / 2.0))),
    "normal": (lambda rng, n: rng.normal(10.0, 2.0, n), lambda t: 1.0 - NormalDist(10.0, 2.0).cdf(t)),
    "lognormal": (lambda rng, n: rng.lognormal(2.0, 0.25, n), lambda t: 1.0 - NormalDist(2.0, 0.25).cdf(math.log(t)) if t > 0 else 1.0),
    "student-t 5": (lambda rng, n: 10.0 + 2.0 * rng.standard_t(5, n), None),
}


def old_estimator(good: np.ndarray, target: float) -> float:
    good = np.sort(good)[::-1]
    if good.size * target >= 1:
        k = int(math.floor(target * good.size))
        return float((good[k - 1] + good[k]) / 2.0) if k < good.size else float(good[-1] - 1.0)
    std = float(good.std(ddof=1))
    fit = float(good.mean()) + NormalDist().inv_cdf(1.0 - target) * std
    return max(fit, float(good[0]) + max(std * 0.1, abs(float(good[0])) * 1e-3, 1e-6))


def student_tail(rng: np.random.Generator):
    reference = 10.0 + 2.0 * rng.standard_t(5, 4_000_000)
    reference.sort()
    return lambda t: 1.0 - np.searchsorted(reference, t, side="right") / reference.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--target", type=float, default=0.01)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--sizes", type=int, nargs="+", default=[14, 30, 50, 190, 500, 2000])
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print(f"target {args.target:.2%}, confidence {args.confidence:.0%}, {args.runs} runs per row")
    print("| scores | good images | method | covered (≤ target) | true rate median | 90th pct | before: covered | before: median | before: 90th pct |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (sample, share) in DISTRIBUTIONS.items():
        share = share or student_tail(rng)
        for n in args.sizes:
            new, old, methods = [], [], set()
            for _ in range(args.runs):
                good = sample(rng, n)
                choice = for_false_reject_rate(good, args.target, confidence=args.confidence)
                methods.add(choice.method)
                new.append(share(choice.value))
                old.append(share(old_estimator(good, args.target)))
            new, old = np.array(new), np.array(old)
            print(f"| {name} | {n} | {'/'.join(sorted(methods))} | {np.mean(new <= args.target):.1%} | {np.median(new):.2%} | "
                  f"{np.quantile(new, 0.9):.2%} | {np.mean(old <= args.target):.1%} | {np.median(old):.2%} | {np.quantile(old, 0.9):.2%} |")


if __name__ == "__main__":
    main()
