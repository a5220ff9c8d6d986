"""``inspectd calibrate MODEL_DIR DATA_DIR``: choose a folder's threshold on labelled images of this station.

    inspectd calibrate /var/lib/inspectd/model /srv/inspectd/labelled --max-false-reject-rate 0.02
    inspectd calibrate model/ data/ --target f1 --min-defect-area

Every image goes through the station's own runtime (at this device's precision); the threshold
is set for the false-reject rate asked for (default 1%) or F1-optimal, the resulting rates are
shown with 95% confidence intervals, and a request the sample cannot support is refused (with
``--accept-estimate`` the normal-fit estimate is taken). Only ``inspectd.json`` changes, written
atomically: the graph, the verification and the self-test stay valid (the threshold is
metadata), and the folder is loaded again, self-test included, before the command succeeds.
With ``--min-defect-area`` it also suggests ``[decision] min_defect_area``: the largest area
that keeps every caught defect, and what it does to false rejects.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np


def add_to(commands) -> None:
    parser = commands.add_parser("calibrate", help="choose a model folder's threshold on labelled images (target false-reject rate or F1)")
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="MVTec layout (test/good, test/<defect>) or good/ + defect folders")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--max-false-reject-rate", type=float, default=0.01, metavar="R", help="share of good parts rejected (default 0.01)")
    target.add_argument("--target", choices=("f1",), help="F1-optimal instead (needs defect images)")
    parser.add_argument("--accept-estimate", action="store_true", help="take a normal-fit estimate when too few good images can show the rate")
    parser.add_argument("--min-defect-area", action="store_true", help="also suggest [decision] min_defect_area")
    parser.add_argument("--dry-run", action="store_true", help="show the result, change nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon import schema
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.evaluation.dataset import labelled_images
    from inspectd.daemon.evaluation.measure import score_all
    from inspectd.daemon.evaluation.thresholds import f1_optimal, for_false_reject_rate
    from inspectd.daemon.runtime.model import Model

    if not 0 < args.max_false_reject_rate < 1:
        raise InspectdError(f"--max-false-reject-rate {args.max_false_reject_rate}: must be a share between 0 and 1", fix="e.g. 0.01 for 1%")
    folder = Path(args.model_dir)
    model = Model.load(folder)
    scored, errors = score_all(model, labelled_images(args.data_dir))
    for error in errors:
        print(f"inspectd: {error}", file=sys.stderr)
    good = np.array([s.score for s in scored if not s.sample.anomalous])
    defective = np.array([s.score for s in scored if s.sample.anomalous])
    if args.target == "f1":
        if defective.size == 0:
            raise InspectdError("holds no defect images: F1 needs both good and defective parts", file=args.data_dir,
                                fix="add defect folders, or use --max-false-reject-rate")
        choice = f1_optimal(good, defective)
    else:
        choice = for_false_reject_rate(good, args.max_false_reject_rate, defective if defective.size else None)
    print(f"was    threshold {model.threshold:.4f} ({model.folder.metadata.threshold.source})")
    print("\n".join(choice.lines()))
    if not choice.supported and not args.accept_estimate:
        raise InspectdError(f"{good.size} good images cannot show a false-reject rate of {args.max_false_reject_rate:.2%}", file=args.data_dir,
                            fix=f"add good images (at least {int(np.ceil(1 / args.max_false_reject_rate))}), ask for a higher rate, "
                                "or pass --accept-estimate to take the normal-fit estimate")
    if args.min_defect_area:
        print(_area_suggestion(model, scored, choice.value))
    if args.dry_run:
        return 0
    meta = model.folder.metadata
    source = "calibration-f1" if choice.method == "f1" else "calibration-frr"
    threshold = schema.Threshold(value=choice.value, source=source, normal_images=int(good.size), anomalous_images=int(defective.size),
                                 target_false_reject_rate=None if choice.method == "f1" else args.max_false_reject_rate,
                                 method=None if choice.method == "f1" else choice.method,
                                 f1=_f1(choice) if choice.method == "f1" else None,
                                 note=f"set by inspectd calibrate on {args.data_dir}; was {meta.threshold.value:.6g} ({meta.threshold.source})")
    dataclasses.replace(meta, threshold=threshold).write(folder)
    try:
        Model.load(folder)  # the self-test replays at the new threshold: a flip there undoes the change
    except InspectdError:
        meta.write(folder)
        raise
    print(f"wrote  {folder / schema.METADATA_FILE} (graph, verification and self-test unchanged)")
    return 1 if errors else 0


def _f1(choice) -> float:
    caught, missed = choice.catch.count, choice.catch.total - choice.catch.count
    return 2 * caught / (2 * caught + choice.false_reject.count + missed) if caught else 0.0


def _area_suggestion(model, scored, threshold: float) -> str:
    """The largest [decision] min_defect_area that keeps every defect caught at ``threshold``, and the false rejects it removes."""
    from inspectd.daemon.runtime.images import read_image

    def area(case) -> int:
        result = model.infer(read_image(case.sample.path), str(case.sample.path))
        return int(np.count_nonzero(result.anomaly_map() > threshold))

    caught = [area(s) for s in scored if s.sample.anomalous and s.score > threshold]
    rejected_good = [area(s) for s in scored if not s.sample.anomalous and s.score > threshold]
    if not caught:
        return "min_defect_area: no defect is caught at this threshold; nothing to suggest"
    keep = min(caught)
    removed = sum(a < keep for a in rejected_good)
    return (f"suggest [decision] min_defect_area = {keep} (pixels above the threshold in the frame): every caught defect has at least "
            f"that many; it would pass {removed} of the {len(rejected_good)} good parts rejected here")
