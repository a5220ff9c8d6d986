"""``inspectd collect``: pictures for training, taken through exactly the station's own camera path.

    inspectd collect --config /etc/inspectd/inspectd.toml --out /srv/parts --count 200
    inspectd collect --config ... --out /srv/parts --count 20 --label scratch --every 2000

The study this project starts from trained on phone pictures: another camera, another light,
another crop. Here frames come from the configured ``[source]`` with its ``roi`` applied, the
very frames the daemon would score, and are written as lossless PNG into an MVTec-layout
folder: ``--label good`` (the default) into ``train/good`` (``--test`` for ``test/good``), any
other label into ``test/<label>``. Numbering continues after the files already there. A
contact sheet of what was collected (``contact-<label>.png``) lets a person check the set at a
glance. Stop the station first: a camera has one owner.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from inspectd.daemon.errors import InspectdError
from inspectd.daemon.files import output_folder
from inspectd.daemon.station.paths import DEFAULT_PATH

SHEET_COLUMNS, THUMB_WIDTH = 8, 160


if TYPE_CHECKING:
    import numpy as np


def add_to(commands) -> None:
    parser = commands.add_parser("collect", help="take training pictures through the station's own source and ROI")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"the station configuration (default {DEFAULT_PATH})")
    parser.add_argument("--out", required=True, metavar="DIR", help="MVTec-layout folder to add to")
    parser.add_argument("--count", required=True, type=int, metavar="N", help="frames to take")
    parser.add_argument("--label", default="good", help="good (default), or the defect's name")
    parser.add_argument("--test", action="store_true", help="good frames go to test/good (held out) instead of train/good")
    parser.add_argument("--every", type=float, default=0.0, metavar="MS", help="at least this long between frames (move or change the part)")
    parser.set_defaults(run=run)


def destination(out: Path, label: str, test: bool) -> Path:
    if not label or "/" in label or label.startswith("."):
        raise InspectdError(f"'{label}' is not a folder name", key="--label", fix="use good, or a defect name such as scratch")
    return out / ("test" if test or label != "good" else "train") / label


def run(args: argparse.Namespace) -> int:
    import cv2
    from inspectd.daemon.runtime.images import write_png
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.sources import BadFrame, SourceEnded

    if args.count <= 0:
        raise InspectdError(f"{args.count} frames", key="--count", fix="ask for at least one")
    if not (math.isfinite(args.every) and args.every >= 0):
        raise InspectdError(f"{args.every} ms", key="--every", fix="a number of milliseconds, 0 or more")
    config = load(args.config)
    folder = destination(Path(args.out), args.label, args.test)
    source = config.source.reading_only().open()  # before anything is made: a source that cannot be had changes nothing
    written: list[Path] = []
    try:
        output_folder(folder, key="--out")
        first = next_number(folder)
        last = -math.inf
        while len(written) < args.count:
            wait = last + args.every / 1000.0 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                frame = source.read(0.5)
            except SourceEnded:
                break
            except BadFrame as exc:
                print(f"inspectd: skipped: {exc}", file=sys.stderr)
                continue
            if frame is None:
                continue
            last = time.monotonic()
            path = folder / f"{first + len(written):03d}.png"
            write_png(path, frame.pixels)  # whole or not at all
            written.append(path)
            _progress(len(written), args.count, folder)
    except InspectdError as exc:
        if not written:
            raise
        raise InspectdError(f"stopped after {len(written)} of {args.count} frames ({written[0].name} to {written[-1].name} are kept "
                            f"in {folder}): {exc}") from None
    finally:
        source.close()
    if not written:
        raise InspectdError("the source gave no frame", key="source", fix="check it with `inspectd doctor --config`")
    sheet = Path(args.out) / f"contact-{args.label}.png"
    write_png(sheet, contact_sheet([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in written]))
    print(f"collected {len(written)} frames into {folder} ({written[0].name} to {written[-1].name}); contact sheet {sheet}")
    return 0 if len(written) == args.count else 1


def next_number(folder: Path) -> int:
    """The number after the highest of the files named by a number (ASCII digits: "²" or "٣" are not numbers here)."""
    from inspectd.daemon.runtime.images import list_images

    try:
        names = [p.stem for p in list_images(folder)]
    except OSError as exc:
        raise InspectdError(f"cannot be listed ({exc.strerror or exc})", file=folder, key="--out", fix="check its permissions") from None
    return 1 + max((int(name) for name in names if re.fullmatch(r"[0-9]+", name)), default=-1)


def contact_sheet(frames: list[np.ndarray]) -> np.ndarray:
    """Thumbnails in rows of SHEET_COLUMNS, each THUMB_WIDTH wide, on white."""
    import cv2
    import numpy as np
    thumbs = []
    for frame in frames:
        colour = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        height = max(1, round(colour.shape[0] * THUMB_WIDTH / colour.shape[1]))
        thumbs.append(cv2.resize(colour, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA))
    cell = max(t.shape[0] for t in thumbs)
    rows = math.ceil(len(thumbs) / SHEET_COLUMNS)
    sheet = np.full((rows * (cell + 4), SHEET_COLUMNS * (THUMB_WIDTH + 4), 3), 255, np.uint8)
    for index, thumb in enumerate(thumbs):
        y, x = (index // SHEET_COLUMNS) * (cell + 4), (index % SHEET_COLUMNS) * (THUMB_WIDTH + 4)
        sheet[y : y + thumb.shape[0], x : x + THUMB_WIDTH] = thumb
    return sheet


def _progress(done: int, total: int, folder: Path) -> None:
    if sys.stderr.isatty():
        filled = int(30 * done / total)
        print(f"\rinspectd collect: [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} into {folder}", end="\n" if done == total else "",
              file=sys.stderr, flush=True)
    elif done == total or done % max(1, total // 4) == 0:
        print(f"inspectd collect: {done}/{total} into {folder}", file=sys.stderr, flush=True)
