"""The station's figures for Prometheus, in its text exposition format, served by the publisher on ``/metrics``.

Why served here and not written for node_exporter's textfile collector: the publisher already follows every record,
so it holds the counters at the moment of a scrape; a text file would be rewritten tens of times a second on the
SD card (or go stale between writes), needs node_exporter on every station and a folder both may write, and a file
left behind by a dead writer still looks fresh, whereas a publisher that is down fails its scrape (``up == 0``).

The counters count the records read since the publisher started (Prometheus' ``rate()`` and ``increase()`` take
its restarts in their stride); the gauges (state, model, drift) start from the station's current run, read back
from the journal. The metrics follow the journal's tail themselves: a broker that is down never stalls them.

    >>> metrics = Metrics("line3-cam1")
    >>> metrics.observe({"MESSAGE_ID": "5a01ba8d9a354266b5189ac90117b557", "INSPECTD_VERDICT": "REJECT", "INSPECTD_FRAME": "1",
    ...                  "INSPECTD_SCORE": "9", "INSPECTD_THRESHOLD": "5", "INSPECTD_LATENCY_MS": "31", "INSPECTD_MODEL": "m",
    ...                  "INSPECTD_SOURCE": "a.png"})
    >>> [line for line in metrics.render().splitlines() if line.startswith("inspectd_verdicts_total")]
    ['inspectd_verdicts_total{verdict="PASS"} 0', 'inspectd_verdicts_total{verdict="REJECT"} 1']
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from inspectd.daemon.publish.messages import JUDGING, NOT_JUDGING, STOPPED, UNKNOWN, StationState, record_kind
from inspectd.daemon.records import RecordError, RecordKind, VerdictRecord, entry_text

LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
STATES = (JUDGING, NOT_JUDGING, STOPPED, UNKNOWN)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    def __init__(self, station: str, unit: str | None = None) -> None:
        self.station, self.unit = station, unit
        self.lock = threading.Lock()
        self.verdicts: Counter[str] = Counter({"PASS": 0, "REJECT": 0})
        self.faults: Counter[str] = Counter()
        self.malformed = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum = 0.0
        self.state = StationState()
        self.published: Counter[str] = Counter()  # messages the broker acknowledged, by record kind
        self.connected = False
        self.connection_failures = 0
        self.gaps = 0
        self.verdicts_lost = 0
        self.last_published = 0.0  # when the newest acknowledged record was written (Unix time)
        self.started = time.time()

    def replay(self, entries: list[Mapping[str, object]]) -> None:
        """The station's current run (its state records): the gauges, not the counters."""
        with self.lock:
            for entry in entries:
                self.state.update(entry, self.unit)

    def observe(self, entry: Mapping[str, object]) -> None:
        kind = record_kind(entry, self.unit)
        with self.lock:
            self.state.update(entry, self.unit)
            if kind == RecordKind.VERDICT:
                try:
                    verdict = VerdictRecord.from_entry(entry)
                except RecordError:
                    self.malformed += 1
                    return
                self.verdicts[verdict.verdict] += 1
                seconds = verdict.latency_ms / 1000
                self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
                self.latency_sum += seconds
                if verdict.precision:
                    self.state.precision = verdict.precision
                self.state.model = verdict.model
            elif kind == RecordKind.FAULT:
                self.faults[entry_text(entry, "INSPECTD_FAULT", False) or "other"] += 1

    def render(self) -> str:
        with self.lock:
            return "\n".join(self._lines()) + "\n"

    def _lines(self) -> list[str]:
        lines: list[str] = []

        def family(name: str, kind: str, text: str, samples: list[tuple[str, object]]) -> None:
            lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])
            lines.extend(f"{name}{labels} {number(value)}" for labels, value in samples)

        family("inspectd_verdicts_total", "counter", "Verdict records read since the publisher started, by verdict.",
               [(f'{{verdict="{verdict}"}}', count) for verdict, count in sorted(self.verdicts.items())])
        family("inspectd_faults_total", "counter", "Fault records read since the publisher started, by where the fault happened.",
               [(f'{{fault="{label(fault)}"}}', count) for fault, count in sorted(self.faults.items())])
        cumulative, samples = 0, []
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), self.buckets):
            cumulative += count
            samples.append((f'_bucket{{le="{"+Inf" if bound == float("inf") else repr(bound)}"}}', cumulative))
        family("inspectd_inference_latency_seconds", "histogram", "Frame in memory to verdict, per verdict record.",
               [*samples, ("_sum", self.latency_sum), ("_count", cumulative)])
        state = self.state
        family("inspectd_judging", "gauge", "1 while the station judges frames (started, source up), else 0.",
               [("", int(state.state == JUDGING))])
        family("inspectd_state", "gauge", "The station's state, one series per state, 1 for the current one.",
               [(f'{{state="{name}"}}', int(state.state == name)) for name in STATES])
        family("inspectd_drift_alarm", "gauge", "1 while a drift alarm is on (PASS scores shifted from the model's normal scores).",
               [("", int(state.drift))])
        if state.drift_sigma is not None:
            family("inspectd_drift_sigma", "gauge", "The PASS scores' shift from normal, in sigmas, at the last drift alarm or its end.",
                   [("", state.drift_sigma)])
        family("inspectd_model_info", "gauge", "The model the station runs (sha256 of model.bin) and the precision OpenVINO runs it at.",
               [(f'{{station="{label(self.station)}",model="{label(state.model or "")}",precision="{label(state.precision or "")}"}}', 1)])
        family("inspectd_malformed_records_total", "counter", "Verdict records that could not be read (a field missing or not a number).",
               [("", self.malformed)])
        family("inspectd_publish_connected", "gauge", "1 while the publisher is connected to the MQTT broker.", [("", int(self.connected))])
        family("inspectd_publish_records_total", "counter", "Records the MQTT broker acknowledged, by kind.",
               [(f'{{kind="{label(kind)}"}}', count) for kind, count in sorted(self.published.items())])
        family("inspectd_publish_connection_failures_total", "counter", "Connections to the MQTT broker that failed or broke.",
               [("", self.connection_failures)])
        family("inspectd_publish_gaps_total", "counter", "Gaps found: records rotated out of the journal before they were published.",
               [("", self.gaps)])
        family("inspectd_publish_verdicts_lost_total", "counter", "Verdicts known lost in those gaps.", [("", self.verdicts_lost)])
        family("inspectd_publish_last_record_timestamp_seconds", "gauge",
               "When the newest record the broker acknowledged was written (Unix time); 0 before the first.", [("", self.last_published)])
        family("inspectd_publish_start_time_seconds", "gauge", "When the publisher started (Unix time).", [("", self.started)])
        return lines


class MetricsServer:
    """``/metrics`` over HTTP, in a thread of its own."""

    def __init__(self, metrics: Metrics, address: tuple[str, int]) -> None:
        render = metrics.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:  # scrapes are not news
                pass

        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
