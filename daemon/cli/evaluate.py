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
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.files import output_folder


def add_to(commands) -> None:
    parser = commands.add_parser("evaluate", help="measure a model folder on labelled images (AUROC, PRO, rates at its threshold)")
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="MVTec layout (test/good, test/<defect>, ground_truth/...) or good/ + defect folders")
    station_rule.add_to(parser)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--report", metavar="DIR", help="write index.html, a score histogram and the worst cases as heatmaps here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.evaluation.dataset import labelled_images
    from inspectd.daemon.evaluation.measure import score_all, summarise, text
    from inspectd.daemon.runtime.model import Model

    if args.report:
        output_folder(args.report, key="--report")  # one line now, not after every image was scored
    samples = labelled_images(args.data_dir)
    model = Model.load(args.model_dir)
    if model.fallback:
        print(f"inspectd: {args.model_dir}: {model.fallback}", file=sys.stderr)
    applied = station_rule.station_rule(args, model)
    if applied.note:
        print(f"inspectd evaluate: {applied.note}", file=sys.stderr)
    scored, errors = score_all(model, samples, applied.rule, _progress)
    for error in errors:
        print(f"inspectd: {error}", file=sys.stderr)
    if errors and not scored:
        raise InspectdError(f"none of its {len(errors)} images could be scored (each named above): nothing to measure", file=args.data_dir,
                            fix="give it images of the parts this model folder was trained on")
    summary = summarise(scored, applied.rule)
    summary.update(precision=model.precision, errors=len(errors), model=str(args.model_dir), data=str(args.data_dir))
    lines = text(summary, args.model_dir, args.data_dir)
    if args.report:
        from pathlib import Path

        from inspectd.daemon.evaluation.report import write_report

        summary["report"] = str(write_report(Path(args.report), model, applied.rule, scored, lines))
    if args.json:
        print(json.dumps(summary))
    else:
        print("\n".join(lines + ([f"report             {summary['report']}"] if args.report else [])))
    return 1 if errors else 0


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rinspectd evaluate: {done}/{total} images", end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done == total or done % 25 == 0:
        print(f"inspectd evaluate: {done}/{total} images", file=sys.stderr, flush=True)
