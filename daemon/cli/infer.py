"""``inspectd infer MODEL_DIR IMAGE...``: score image files with a model folder, one line (or JSON object) each.

The verdict is the station's decision rule (``cli.station_rule``: its configuration when it has one), the
images judged in the order given, as the station would judge them replayed in that order.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from inspectd.daemon.cli import station_rule
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.files import output_folder


def add_to(commands) -> None:
    parser = commands.add_parser("infer", help="score images with a model folder")
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders (their images, sub-folders included)")
    station_rule.add_to(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--heatmap-dir", metavar="DIR", help="write <image>_heatmap.png (original | overlay) here")
    parser.add_argument("--precision", default="auto", choices=("auto", "f32", "bf16", "f16"),
                        help="auto (default): the fastest this device runs natively that passes the folder's self-test; "
                             "a named one is tried first, then the ones after it down to f32")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.runtime.heatmap import overlay
    from inspectd.daemon.runtime.images import say, write_png
    from inspectd.daemon.runtime.model import Model
    from inspectd.daemon.runtime.selftest_memory import SelfTestMemory

    if args.heatmap_dir:
        output_folder(args.heatmap_dir, key="--heatmap-dir")  # one line now, not one per image
    model = Model.load(args.model_dir, precision=args.precision, memory=SelfTestMemory.default())
    if model.fallback:
        print(f"inspectd: {args.model_dir}: {model.fallback}", file=sys.stderr)
    applied = station_rule.station_rule(args, model)
    if applied.note:
        print(f"inspectd infer: {applied.note}", file=sys.stderr)
    rule, judge = applied.rule, applied.rule.judge()
    failures = 0
    heatmap_names: set[str] = set()
    for image, frame, prepared in read_ahead(expand(args.images), model):
        try:
            if isinstance(prepared, InspectdError):
                raise prepared
            result = model.score(prepared)
            decided = judge(result.score, result.anomaly_map)
            heatmap = None
            if args.heatmap_dir:
                heatmap = Path(args.heatmap_dir) / heatmap_name(Path(image), heatmap_names)
                write_png(heatmap, overlay(frame, result, rule, decided.verdict))
        except InspectdError as exc:
            failures += 1
            say(f"inspectd: {exc}")  # whole, though the reader thread's decoder may be writing to stderr now
            if args.json:
                print(json.dumps({"image": image, "error": str(exc)}), flush=True)
            continue
        verdict = str(decided.verdict)
        if args.json:
            record = {"image": image, "verdict": verdict, "score": round(result.score, 6), "threshold": round(rule.threshold, 6),
                      "anomalous": decided.anomalous, "latency_ms": round(result.latency_ms, 3)}
            if decided.defect_area is not None:
                record["defect_area"] = decided.defect_area
            if heatmap:
                record["heatmap"] = str(heatmap)
            print(json.dumps(record), flush=True)
        else:
            print(f"{verdict:6} score {result.score:9.4f}  threshold {rule.threshold:.4f}  {result.latency_ms:7.2f} ms  {image}", flush=True)
    return 1 if failures else 0


def read_ahead(images: list[str], model) -> Iterator[tuple[str, object, object]]:
    """(image, frame, Model.prepare's result or the error reading it gave) for each image, in order.

    A thread reads and prepares the next image while the caller scores this one: decoding and resizing
    release the GIL, and overlap the graph's own threads where these leave a core idle. At most one
    image waits ready, so at most three frames are in memory at once.
    """
    from inspectd.daemon.runtime.images import read_image

    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def reader() -> None:
        for image in images:
            if stop.is_set():
                return
            try:
                frame = read_image(image)
                ready.put((image, frame, model.prepare(frame, image)))
            except Exception as exc:  # noqa: BLE001 - handed over in order: an InspectdError is that image's record, others raised
                ready.put((image, None, exc))

    thread = threading.Thread(target=reader, name="inspectd-read-ahead", daemon=True)
    thread.start()
    try:
        for _ in images:
            item = ready.get()
            if isinstance(item[2], Exception) and not isinstance(item[2], InspectdError):
                raise item[2]
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # a reader blocked on a full queue: take its item so that it sees ``stop``
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass


def expand(arguments: list[str]) -> list[str]:
    """Files as given; a folder becomes its images, sub-folders included, sorted by path. A folder with no
    images stays as it is, so it gets its own error record: every argument yields at least one record."""
    from inspectd.daemon.runtime.images import IMAGE_SUFFIXES

    paths = []
    for argument in arguments:
        folder = Path(argument)
        if folder.is_dir():
            found = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
            paths += found or [argument]
        else:
            paths.append(argument)
    return paths


def heatmap_name(image: Path, used: set[str]) -> str:
    """<folder>_<name>_heatmap.png: test/good/000.png and test/stain/000.png must not overwrite each other."""
    stem = f"{image.parent.name}_{image.stem}" if image.parent.name else image.stem
    name, number = f"{stem}_heatmap.png", 1
    while name in used:
        number += 1
        name = f"{stem}_{number}_heatmap.png"
    used.add(name)
    return name
