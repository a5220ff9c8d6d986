"""``inspectd report``: a shift read back from the journal (systemd-python's reader, not text).

    inspectd report --since -8h                       # the last eight hours
    inspectd report --since "2026-11-29 06:00" --until "2026-11-29 14:00" --plot shift.png
    inspectd report --directory /var/log/journal/... --json    # a journal copied from a station
    inspectd report --directory /var/log/journal/remote        # a fleet's journals, collected by systemd-journal-remote

Per hour (``--every`` for other periods): frames, rejects and the reject rate, the PASS scores' mean and its shift from the
model folder's normal scores (in standard deviations of the good calibration images: a camera
moved or a light changed shows here before it turns into false rejects); over the period:
faults by kind, drift alarms, latency percentiles. ``--plot`` draws reject rate and score shift
per hour (OpenCV, no plotting library on the station).

Records from more than one station (a collector's folder) add each station's figures and the fleet's total. The
station is the host that wrote the record: journald stamps _HOSTNAME on every record itself, and journal-upload and
journal-remote carry it along (README, "A fleet's journals in one place").
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path


from inspectd.daemon.errors import InspectdError
from inspectd.daemon.station.paths import DEFAULT_PATH
from inspectd.daemon.records import SYSLOG_IDENTIFIER, RecordError, RecordKind, VerdictRecord, kind_of



def drift_sigmas() -> float:
    """A period whose PASS mean sits this far from normal is marked, at the daemon's own default drift limit."""
    from inspectd.daemon.station.drift import LIMIT_SIGMA

    return LIMIT_SIGMA


def add_to(commands) -> None:
    parser = commands.add_parser("report", help="a shift from the journal: frames, rejects, score drift, faults, latency per hour")
    parser.add_argument("--since", metavar="WHEN", help='"YYYY-MM-DD HH:MM", or relative: -8h, -30m, -2d (default: all)')
    parser.add_argument("--until", metavar="WHEN", help="same forms (default: now)")
    parser.add_argument("--directory", metavar="DIR", help="read journal files from DIR (journalctl -D) instead of this machine's journal")
    parser.add_argument("--model", metavar="DIR", help=f"model folder for the normal scores (default: the one in {DEFAULT_PATH})")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--plot", metavar="FILE.png", help="reject rate and score shift per period, as a PNG")
    parser.add_argument("--every", default="1h", metavar="PERIOD", help="the rows' period: 1h (default), 15m, 10s...")
    parser.set_defaults(run=run)


@dataclass
class Period:
    frames: int = 0
    rejects: int = 0
    pass_scores: list[float] = field(default_factory=list)


def when(text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    relative = re.fullmatch(r"-(\d+)([mhd])", text.strip())
    if relative:
        units = {"m": "minutes", "h": "hours", "d": "days"}
        return now - timedelta(**{units[relative[2]]: int(relative[1])})
    try:
        return datetime.fromisoformat(text.strip()).astimezone()  # a time without a zone is this machine's local time
    except ValueError:
        raise InspectdError(f"'{text}' is not a time", key="--since/--until", fix='use "2026-11-29 06:00" or -8h, -30m, -2d') from None


def read_records(directory: str | None, since: datetime | None, until: datetime | None) -> list[dict]:
    try:
        from systemd import journal
    except ImportError:
        raise InspectdError("systemd-python is not installed", fix="apt install python3-systemd (or pip install systemd-python)") from None
    if directory is not None and not Path(directory).is_dir():
        raise InspectdError("not a folder of journal files", file=directory, fix="pass the folder journalctl -D would read")
    reader = journal.Reader(path=directory) if directory else journal.Reader()
    reader.add_match(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    if since is not None:
        reader.seek_realtime(since)
    records = []
    for entry in reader:
        stamp = entry["__REALTIME_TIMESTAMP"]
        stamp = stamp if stamp.tzinfo else stamp.astimezone()  # older systemd-python gives local naive times
        if until is not None and stamp > until:
            break
        if since is not None and stamp < since:
            continue
        records.append({key: value for key, value in entry.items()
                        if key.startswith(("INSPECTD_", "MESSAGE", "PRIORITY", "__REALTIME", "_BOOT_ID", "_HOSTNAME"))})
    return records


def period_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", text.strip())
    if not match or int(match[1]) == 0:
        raise InspectdError(f"'{text}' is not a period", key="--every", fix="e.g. 1h, 15m or 10s")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def summarise(records: list[dict], normal, every_s: int = 3600) -> dict:
    import numpy as np
    hours: dict[datetime, Period] = defaultdict(Period)
    latencies, faults, drift_alarms, models = [], Counter(), [], Counter()
    malformed: list[str] = []
    for record in records:
        kind = kind_of(record)
        stamp = record["__REALTIME_TIMESTAMP"]
        if kind is RecordKind.VERDICT or "INSPECTD_VERDICT" in record:
            try:
                verdict = VerdictRecord.from_entry(record)
            except RecordError as problem:  # counted and named once, never a NaN in the figures
                malformed.append(f"{stamp.isoformat(sep=' ', timespec='seconds')}: {problem}")
                continue
            start = datetime.fromtimestamp(stamp.timestamp() // every_s * every_s)
            hour = hours[start]
            hour.frames += 1
            hour.rejects += verdict.rejected
            if not verdict.rejected:
                hour.pass_scores.append(verdict.score)
            latencies.append(verdict.latency_ms)
            models[verdict.model[:12]] += 1
        elif kind is RecordKind.FAULT:
            faults[fault_kind(record)] += 1
        elif kind is RecordKind.DRIFT:
            drift_alarms.append({"time": stamp.isoformat(sep=" ", timespec="seconds"), "message": record.get("MESSAGE", "")})
    rows = []
    for start in sorted(hours):
        hour = hours[start]
        mean = float(np.mean(hour.pass_scores)) if hour.pass_scores else None
        shift = (mean - normal.mean) / normal.std if mean is not None and normal is not None and normal.std > 0 else None
        rows.append({"hour": start.isoformat(sep=" ", timespec="seconds" if every_s < 60 else "minutes"), "frames": hour.frames, "rejects": hour.rejects,
                     "reject_rate": hour.rejects / hour.frames, "pass_mean": mean, "shift_sigmas": shift,
                     "drift": shift is not None and abs(shift) >= drift_sigmas()})
    frames = sum(r["frames"] for r in rows)
    return {
        "frames": frames, "rejects": sum(r["rejects"] for r in rows), "hours": rows, "faults": dict(faults),
        "drift_alarms": drift_alarms, "models": dict(models), "malformed_records": malformed,
        "normal": None if normal is None else {"mean": normal.mean, "std": normal.std, "count": normal.count},
        "latency_ms": None if not latencies else {q: float(np.percentile(latencies, p)) for q, p in
                                                   (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
    }


def by_station(records: list[dict], normal, every_s: int) -> dict[str, dict]:
    """Each station's summary (the host that wrote its records), by name; {} when the records are one station's."""
    hosts: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        hosts[str(record.get("_HOSTNAME", "?"))].append(record)
    if len(hosts) < 2:
        return {}
    return {host: summarise(found, normal, every_s) for host, found in sorted(hosts.items())}


def station_lines(stations: dict[str, dict], fleet: dict) -> list[str]:
    width = max(len("fleet total"), *(len(name) for name in stations))
    lines = [f"{'station':{width}} {'frames':>7} {'rejects':>8} {'rate':>7}  {'faults':>6}  {'latency p50/p99 ms':>18}"]
    for name, summary in [*stations.items(), ("fleet total", fleet)]:
        rate = f"{summary['rejects'] / summary['frames']:.2%}" if summary["frames"] else "-"
        latency = summary["latency_ms"]
        shown = f"{latency['p50']:.1f} / {latency['p99']:.1f}" if latency else "-"
        lines.append(f"{name:{width}} {summary['frames']:>7} {summary['rejects']:>8} {rate:>7}  {sum(summary['faults'].values()):>6}  {shown:>18}")
    return lines


def fault_kind(record: dict) -> str:
    """The fault's kind: its own field where the daemon wrote one, else what the message is about."""
    if record.get("INSPECTD_FAULT"):
        return str(record["INSPECTD_FAULT"])
    message = str(record.get("MESSAGE", "")).lower()
    for kind, words in (("archive", ("archive",)), ("frame", ("not a readable", "declares", "not a regular file", "bit image")),
                        ("source", ("source", "camera", "stream", "folder")), ("reload", ("reload",))):
        if any(word in message for word in words):
            return kind
    return "other"


def text(summary: dict, since: datetime | None, until: datetime | None) -> list[str]:
    normal = summary["normal"]
    period = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}" if since and until else "the whole journal"
    lines = [f"inspectd report, {period}: {summary['frames']} frames, {summary['rejects']} rejects"
             + (f" ({summary['rejects'] / summary['frames']:.2%})" if summary["frames"] else ""),
             f"{'from':19} {'frames':>7} {'rejects':>8} {'rate':>7}  {'PASS mean':>9}  " +
             (f"shift (normal {normal['mean']:.2f} ± {normal['std']:.2f})" if normal else "shift (no model folder: --model DIR)")]
    for row in summary["hours"]:
        mean = "-" if row["pass_mean"] is None else f"{row['pass_mean']:.2f}"
        shift = "" if row["shift_sigmas"] is None else f"{row['shift_sigmas']:+.2f} σ" + ("  DRIFT" if row["drift"] else "")
        lines.append(f"{row['hour']:19} {row['frames']:>7} {row['rejects']:>8} {row['reject_rate']:>7.2%}  {mean:>9}  {shift}")
    faults = summary["faults"]
    lines.append("faults: " + (", ".join(f"{kind} {count}" for kind, count in sorted(faults.items())) if faults else "none"))
    lines.append(f"drift alarms: {len(summary['drift_alarms'])}" + "".join(f"\n  {a['time']} {a['message']}" for a in summary["drift_alarms"]))
    if summary["malformed_records"]:
        bad = summary["malformed_records"]
        lines.append(f"verdict records not counted (malformed): {len(bad)}, the first: {bad[0]}")
    if summary["latency_ms"]:
        latency = summary["latency_ms"]
        lines.append(f"latency ms: p50 {latency['p50']:.1f}, p95 {latency['p95']:.1f}, p99 {latency['p99']:.1f}, max {latency['max']:.1f}")
    return lines


def plot(summary: dict, path: Path) -> None:
    import numpy as np
    import cv2

    from inspectd.daemon.runtime.images import write_png

    rows = summary["hours"]
    width, height, left, right, top, middle, bottom = 900, 460, 70, 880, 30, 230, 420
    canvas = np.full((height, width, 3), 255, np.uint8)
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    slot = (right - left) / max(len(rows), 1)
    highest_rate = max([r["reject_rate"] for r in rows] + [0.01])
    shifts = [abs(r["shift_sigmas"]) for r in rows if r["shift_sigmas"] is not None]
    largest_shift = max(shifts + [drift_sigmas() * 1.5])
    zero = (middle + 20 + bottom) // 2
    for index, row in enumerate(rows):
        x0, x1 = int(left + index * slot + 2), int(left + (index + 1) * slot - 2)
        cv2.rectangle(canvas, (x0, middle - int(row["reject_rate"] / highest_rate * (middle - top))), (x1, middle), (60, 60, 220), -1)
        if row["shift_sigmas"] is not None:
            y = zero - int(row["shift_sigmas"] / largest_shift * (bottom - zero))
            cv2.rectangle(canvas, (x0, min(y, zero)), (x1, max(y, zero)), (40, 120, 240) if row["drift"] else (150, 150, 150), -1)
        if len(rows) <= 24 or index % max(1, len(rows) // 12) == 0:
            cv2.putText(canvas, row["hour"][11:], (x0, bottom + 18), font, 0.35, black, 1, cv2.LINE_AA)
    for limit in (drift_sigmas(), -drift_sigmas()):
        y = zero - int(limit / largest_shift * (bottom - zero))
        cv2.line(canvas, (left, y), (right, y), (0, 0, 200), 1)
    cv2.line(canvas, (left, zero), (right, zero), black, 1)
    cv2.line(canvas, (left, middle), (right, middle), black, 1)
    cv2.putText(canvas, f"reject rate per period (top {highest_rate:.1%})", (left, top - 10), font, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, f"PASS score shift from normal, in sigmas (lines at +-{drift_sigmas():g})", (left, middle + 18), font, 0.5, black, 1, cv2.LINE_AA)
    write_png(path, canvas)


def run(args: argparse.Namespace) -> int:
    now = datetime.now().astimezone()  # aware, as the journal's timestamps are
    since, until = when(args.since, now), when(args.until, now)
    normal = _normal_scores(args.model)
    records, every_s = read_records(args.directory, since, until), period_seconds(args.every)
    summary = summarise(records, normal, every_s)
    stations = by_station(records, normal, every_s)
    if stations:
        summary["stations"] = stations
    if args.plot:
        plot(summary, Path(args.plot))
        summary["plot"] = args.plot
    lines = text(summary, since, until or now if since else None)
    if stations:
        lines[1:1] = [f"{len(stations)} stations (the hosts that wrote the records):", *station_lines(stations, summary), ""]
    print(json.dumps(summary, default=str) if args.json else "\n".join(lines))
    return 0


def _normal_scores(model_dir: str | None):
    from inspectd.daemon.schema import read_model_folder

    if model_dir is not None:
        return read_model_folder(model_dir, check_hashes=False).metadata.normal_scores
    try:  # the installed configuration's folder, when there is one: a collector of a fleet's journals has none
        from inspectd.daemon.station.config import load

        if not DEFAULT_PATH.is_file():
            return None
        return read_model_folder(load(DEFAULT_PATH).model.path, check_hashes=False).metadata.normal_scores
    except InspectdError:
        return None
