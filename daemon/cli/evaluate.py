"""``inspectd evaluate MODEL_DIR DATA_DIR [--config FILE | --no-config] [--json] [--report DIR]``: the deployed folder
measured on labelled images.

Runs every image of an MVTec-layout folder (or good/ + defect folders) through the station's
own runtime, at the precision this device runs, and decision rule (the station's configuration:
``cli.station_rule``), and prints image AUROC, pixel AUROC and PRO where masks exist, the
false-reject and catch rates of the rule's verdicts with 95% confidence intervals, F1, the
confusion counts, recall per defect type and latency. With confirmation (N of M frames) a
verdict spans several frames: no per-image rate is printed then, only the verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys

from inspectd.daemon.cli import station_rule


def add_to(commands) -> None:
    parser = commands.add_parser("evaluate", help="measure a model folder on labelled images (AUROC, PRO, rates at its threshold)")
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="MVTec layout (test/good, test/<defect>, ground_truth/...) or good/ + defect folders")
    station_rule.add_to(parser)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--report", metavar="DIR", help="write index.html, a score histogram and the worst cases as heatmaps here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.cli.calibrate import report_errors
    from inspectd.daemon.cli.progress import ImageCount
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.evaluation.dataset import labelled_images
    from inspectd.daemon.evaluation.measure import json_safe, score_all, summarise, text
    from inspectd.daemon.evaluation.roles import role_of
    from inspectd.daemon.runtime.model import Model
    from inspectd.daemon.runtime.selftest_memory import SelfTestMemory

    samples = labelled_images(args.data_dir)
    report = _report_folder(args.report) if args.report else None
    model = Model.load(args.model_dir, memory=SelfTestMemory.default())
    if model.fallback:
        print(f"inspectd: {args.model_dir}: {model.fallback}", file=sys.stderr)
    applied = station_rule.station_rule(args, model)
    if applied.note:
        print(f"inspectd evaluate: {applied.note}", file=sys.stderr)
    scored, errors = score_all(model, samples, applied.rule, ImageCount("inspectd evaluate"))
    try:
        report_errors(errors, len(samples), args.data_dir, "the figures below leave them out")
    except InspectdError as exc:
        if not scored:
            raise
        print(f"inspectd: {exc}", file=sys.stderr)
    summary = summarise(scored, applied.rule, role_of([s.sample for s in scored], model.folder.metadata.images))
    summary.update(precision=model.precision, errors=len(errors), model=str(args.model_dir), data=str(args.data_dir))
    lines = text(summary, args.model_dir, args.data_dir)
    if report is not None:
        from inspectd.daemon.evaluation.report import write_report

        try:
            summary["report"] = str(write_report(report, model, applied.rule, scored, lines))
        except OSError as exc:
            raise InspectdError(f"cannot be written ({exc.strerror or exc})", file=report, key=None,
                                fix="pass --report a folder you can write, with free space") from None
    if args.json:
        print(json.dumps(json_safe(summary), allow_nan=False))
    else:
        print("\n".join(lines + ([f"report             {summary['report']}"] if report is not None else [])))
    return 1 if errors else 0


def _report_folder(text: str):
    """--report's folder, made now: a place that cannot hold it is said before any image is scored."""
    from pathlib import Path

    from inspectd.daemon.errors import InspectdError

    folder = Path(text)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".inspectd-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        what = "is a file, not a folder" if folder.is_file() else f"cannot be written ({exc.strerror or exc})"
        raise InspectdError(f"--report: {what}", file=folder, fix="pass --report a new or writable folder") from None
    return folder
