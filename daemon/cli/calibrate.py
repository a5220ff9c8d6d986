"""``inspectd calibrate MODEL_DIR DATA_DIR``: choose a folder's threshold on labelled images of this station.

    inspectd calibrate /var/lib/inspectd/model /srv/inspectd/labelled --max-false-reject-rate 0.02
    inspectd calibrate model/ data/ --target f1 --min-defect-area

Every image goes through the station's own runtime (at this device's precision) and decision rule
(its configuration: ``cli.station_rule``; with a minimum defect area the threshold is chosen on
``Rule.critical_score``, so the rates shown are the station's); the threshold
is set for the false-reject rate asked for (default 1%) or F1-optimal, the resulting rates are
shown with 95% confidence intervals, and a request the sample cannot support is refused (with
``--accept-estimate`` the normal-fit estimate is taken). Only ``inspectd.json`` changes, written
atomically: the graph, the verification and the self-test stay valid (the threshold is
metadata), and the folder is loaded again, self-test included, before the command succeeds.
A run that fails changes nothing: with any image it could not score (each named in one line) it
writes nothing (``--dry-run`` shows what the rest would give), nor when the write itself fails.
With ``--min-defect-area`` it also suggests ``[decision] min_defect_area``: the largest area
that keeps every caught defect, and what it does to false rejects.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


from inspectd.daemon.cli import station_rule


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
    station_rule.add_to(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from inspectd.daemon import schema
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.evaluation.dataset import labelled_images
    from inspectd.daemon.evaluation.measure import score_all
    from inspectd.daemon.evaluation.thresholds import f1_optimal, for_false_reject_rate
    from inspectd.daemon.runtime.model import Model

    if not 0 < args.max_false_reject_rate < 1 or 1.0 - args.max_false_reject_rate == 1.0:  # 1e-300: no fit can place it
        raise InspectdError(f"--max-false-reject-rate {args.max_false_reject_rate}: must be a share between 0 and 1, at least 1e-16", fix="e.g. 0.01 for 1%")
    folder = Path(args.model_dir)
    model = Model.load(folder)
    applied = station_rule.station_rule(args, model)
    if applied.note:
        print(f"inspectd calibrate: {applied.note}", file=sys.stderr)
    rule = applied.rule
    scored, errors = score_all(model, labelled_images(args.data_dir), rule)
    for error in errors:
        print(f"inspectd: {error}", file=sys.stderr)
    # Chosen on what the rule compares with the threshold, so the rates are the station's (its area rule included).
    good = np.array([s.critical for s in scored if not s.sample.anomalous])
    defective = np.array([s.critical for s in scored if s.sample.anomalous])
    if good.size == 0:
        raise InspectdError(f"none of its good images could be scored ({len(errors)} refused, each named above): nothing was written",
                            file=args.data_dir, fix="give it good images of the parts this model folder was trained on")
    if args.target == "f1":
        if defective.size == 0:
            raise InspectdError("holds no defect images: F1 needs both good and defective parts", file=args.data_dir,
                                fix="add defect folders, or use --max-false-reject-rate")
        choice = f1_optimal(good, defective)
    else:
        choice = for_false_reject_rate(good, args.max_false_reject_rate, defective if defective.size else None)
    print(f"was    threshold {model.threshold:.4f} ({model.folder.metadata.threshold.source})")
    if not rule.per_frame:
        print(f"note   {rule.describe()}: the rates below are per frame; a part's rate depends on how many frames each part gives")
    print("\n".join(choice.lines()))
    if not choice.supported and not args.accept_estimate:
        raise InspectdError(f"{good.size} good images cannot show a false-reject rate of {args.max_false_reject_rate:.2%}", file=args.data_dir,
                            fix=f"add good images (at least {int(np.ceil(1 / args.max_false_reject_rate))}), ask for a higher rate, "
                                "or pass --accept-estimate to take the normal-fit estimate")
    if args.min_defect_area:
        print(_area_suggestion(model, scored, rule, choice.value))
    if applied.threshold_overridden:
        raise InspectdError(f"sets the threshold the station applies ({rule.threshold:.4f}), not the model folder: calibrating the folder "
                            "would change nothing there, and nothing was written", file=applied.config, key="model.threshold",
                            fix=f"set model.threshold = {choice.value:.4f} there, or remove it and run calibrate again")
    if args.dry_run:
        return 1 if errors else 0
    if errors:  # a threshold chosen on the images that happened to be readable is not the one asked for
        raise InspectdError(f"{len(errors)} of {len(scored) + len(errors)} images could not be scored (each named above): nothing was written",
                            file=args.data_dir, fix="replace or remove those images and run calibrate again (--dry-run shows the rest)")
    meta = model.folder.metadata
    threshold = choice.record(note=f"set by inspectd calibrate on {args.data_dir}; was {meta.threshold.value:.6g} ({meta.threshold.source})")
    try:
        dataclasses.replace(meta, threshold=threshold).write(folder)
    except OSError as exc:
        raise InspectdError(f"cannot be written ({exc.strerror or exc}): nothing was changed", file=folder / schema.METADATA_FILE,
                            fix="let this user write the model folder, on a disk with room") from None
    try:
        Model.load(folder)  # the self-test replays at the new threshold: a flip there undoes the change
    except InspectdError:
        meta.write(folder)
        raise
    print(f"wrote  {folder / schema.METADATA_FILE} (graph, verification and self-test unchanged)")
    return 0


def _area_suggestion(model, scored, rule, threshold: float) -> str:
    """The largest [decision] min_defect_area that keeps every defect caught at ``threshold``, and the false rejects it removes."""
    import numpy as np
    from inspectd.daemon.runtime.decision import Rule
    from inspectd.daemon.runtime.images import read_image

    without_area = Rule(threshold, pixel_threshold=rule.pixel_threshold)

    def area(case) -> int:
        heat = model.infer(read_image(case.sample.path), str(case.sample.path)).anomaly_map()
        return int(np.count_nonzero(heat > without_area.area_threshold))

    caught = [area(s) for s in scored if s.sample.anomalous and without_area.anomalous(s.score)[0]]
    rejected_good = [area(s) for s in scored if not s.sample.anomalous and without_area.anomalous(s.score)[0]]
    if not caught:
        return "min_defect_area: no defect is caught at this threshold; nothing to suggest"
    keep = min(caught)
    removed = sum(a < keep for a in rejected_good)
    return (f"suggest [decision] min_defect_area = {keep} (pixels above {without_area.area_threshold:.4f} in the frame): every caught "
            f"defect has at least that many; it would pass {removed} of the {len(rejected_good)} good parts rejected here")
