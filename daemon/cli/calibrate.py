"""``inspectd calibrate MODEL_DIR DATA_DIR``: choose a folder's threshold on labelled images of this station.

    inspectd calibrate /var/lib/inspectd/model /srv/inspectd/labelled --max-false-reject-rate 0.02
    inspectd calibrate model/ data/ --target f1 --min-defect-area

Every image goes through the station's own runtime (at this device's precision) and decision rule
(its configuration: ``cli.station_rule``; with a minimum defect area the threshold is chosen on
``Rule.critical_score``, so the rates shown are the station's); the threshold
is set for the false-reject rate asked for (default 1%) or F1-optimal, the resulting rates are
shown with their bounds, and a request the good images cannot support without assuming how their
scores are distributed is refused (with ``--accept-estimate`` the Gumbel-fit bound is taken:
``evaluation.thresholds``). Good images the model was fitted on (the folder records them: ``evaluation.roles``)
are left out of the threshold. A calibration that cannot finish (an unreadable image, a threshold
that fails the self-test, a folder it cannot write) changes nothing. Only ``inspectd.json`` changes, written
atomically: the graph, the verification and the self-test stay valid (the threshold is
metadata), and the self-test is replayed at the new threshold before it is written.
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
    parser.add_argument("--confidence", type=float, default=0.9, metavar="C",
                        help="the false-reject rate is at most R with this confidence (default 0.9); README 'Scores and thresholds'")
    parser.add_argument("--accept-estimate", action="store_true",
                        help="take the Gumbel-fit bound when the good images are too few for a distribution-free one")
    parser.add_argument("--min-defect-area", action="store_true", help="also suggest [decision] min_defect_area")
    parser.add_argument("--dry-run", action="store_true", help="show the result, change nothing")
    station_rule.add_to(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from inspectd.daemon import schema
    from inspectd.daemon.cli.progress import ImageCount
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.evaluation.dataset import labelled_images
    from inspectd.daemon.evaluation.measure import score_all
    from inspectd.daemon.evaluation.roles import FIT, digest, role_of
    from inspectd.daemon.evaluation.thresholds import check_target, f1_optimal, for_false_reject_rate, images_needed
    from inspectd.daemon.runtime.model import Model
    from inspectd.daemon.runtime.selftest_memory import SelfTestMemory

    try:
        check_target(args.max_false_reject_rate, args.confidence)
    except InspectdError as exc:
        raise InspectdError(f"--max-false-reject-rate {args.max_false_reject_rate:g} --confidence {args.confidence:g}: {exc.problem}",
                            fix=exc.fix) from None
    folder = Path(args.model_dir)
    samples = labelled_images(args.data_dir)
    model = Model.load(folder, memory=SelfTestMemory.default())
    applied = station_rule.station_rule(args, model)
    if applied.note:
        print(f"inspectd calibrate: {applied.note}", file=sys.stderr)
    rule = applied.rule
    scored, errors = score_all(model, samples, rule, ImageCount("inspectd calibrate"))
    report_errors(errors, len(samples), args.data_dir, "nothing was written", shown=0)
    meta = model.folder.metadata
    roles = role_of([s.sample for s in scored], meta.images)
    fitted = [s for s, role in zip(scored, roles) if role == FIT and not s.sample.anomalous]
    if fitted:
        print(f"note   {len(fitted)} of the good images fitted the model (they score lower than new parts would): left out of the "
              "threshold")
    # Chosen on what the rule compares with the threshold, so the rates are the station's (its area rule included).
    setting = [s for s, role in zip(scored, roles) if not (role == FIT and not s.sample.anomalous)]
    good = np.array([s.critical for s in setting if not s.sample.anomalous])
    defective = np.array([s.critical for s in setting if s.sample.anomalous])
    if good.size == 0:
        raise InspectdError("holds no good images the model was not fitted on: a threshold set on those would reject more good parts "
                            "on the line than it says", file=args.data_dir, fix="calibrate on good images held out of training")
    if args.target == "f1":
        if defective.size == 0:
            raise InspectdError("holds no defect images: F1 needs both good and defective parts", file=args.data_dir,
                                fix="add defect folders, or use --max-false-reject-rate")
        choice = f1_optimal(good, defective)
    else:
        choice = for_false_reject_rate(good, args.max_false_reject_rate, defective if defective.size else None, args.confidence)
    print(f"was    threshold {model.threshold:.4f} ({meta.threshold.source})")
    print(f"images {good.size} good set the threshold; {defective.size} defective "
          + ("set it too (F1)" if args.target == "f1" else "played no part in it: their catch rate is out of sample"))
    if not rule.per_frame:
        print(f"note   {rule.describe()}: the rates below are per frame; a part's rate depends on how many frames each part gives")
    print("\n".join(choice.lines()))
    if not choice.supported and not args.accept_estimate:
        needed = images_needed(args.max_false_reject_rate, args.confidence)
        raise InspectdError(f"{good.size} good images cannot bound a false-reject rate of {args.max_false_reject_rate:.2%} at "
                            f"{args.confidence:.0%} confidence without assuming how their scores are distributed; nothing was written",
                            file=args.data_dir, fix=f"add good images (at least {needed}), ask for a higher rate, or pass "
                                                    "--accept-estimate to take the Gumbel-fit bound printed above")
    if args.min_defect_area:
        print(_area_suggestion(model, scored, rule, choice.value))
    if applied.threshold_overridden:
        raise InspectdError(f"sets the threshold the station applies ({rule.threshold:.4f}), not the model folder: calibrating the folder "
                            "would change nothing there, and nothing was written", file=applied.config, key="model.threshold",
                            fix=f"set model.threshold = {choice.value:.4f} there, or remove it and run calibrate again")
    if args.dry_run:
        return 0
    threshold = choice.record(note=f"set by inspectd calibrate on {args.data_dir}; was {meta.threshold.value:.6g} ({meta.threshold.source})")
    images = schema.ImageRoles(fit=meta.images.fit if meta.images else None,
                               threshold=tuple(digest(s.sample.path) for s in setting if not s.sample.anomalous),
                               threshold_cross_fitted=False, chose=meta.images.chose if meta.images else ())
    updated = dataclasses.replace(meta, threshold=threshold, images=images)
    Model(schema.ModelFolder(folder, updated))  # the self-test replays at the new threshold before anything is written
    try:
        updated.write(folder)
    except OSError as exc:
        raise InspectdError(f"cannot be written ({exc.strerror or exc}); {schema.METADATA_FILE} is unchanged", file=folder / schema.METADATA_FILE,
                            fix="calibrate a copy of the folder in a writable place with free space, or free space here") from None
    print(f"wrote  {folder / schema.METADATA_FILE} (graph, verification and self-test unchanged)")
    return 0


def report_errors(errors: list[str], total: int, data_dir, consequence: str, shown: int = 5) -> None:
    """The images that could not be scored: a few lines, then the count; none scored, or a command that must not go on with
    some missing (calibrate), is one InspectdError."""
    from inspectd.daemon.errors import InspectdError

    if not errors:
        return
    if len(errors) == total:
        raise InspectdError(f"none of the {total} images could be scored; the first: {errors[0]}", file=data_dir,
                            fix="pass images this model takes (see the problem above)")
    for error in errors[:shown]:
        print(f"inspectd: {error}", file=sys.stderr)
    if shown:
        more = f" ({len(errors) - shown} more not shown)" if len(errors) > shown else ""
    else:
        more = f" (the first: {errors[0]})"
    raise InspectdError(f"{len(errors)} of {total} images could not be scored{more}; {consequence}", file=data_dir,
                        fix="fix or remove those images and run again")


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
