"""The private-journald harness: a real systemd-journald, records sent and read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inspectd.testing.journald import JOURNALD_CONF, private_journald, unavailable_reason

_reason = unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"private journald unavailable: {_reason}")


def _has_systemd_python() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import systemd.journal"], capture_output=True)
    return probe.returncode == 0


needs_systemd_python = pytest.mark.skipif(
    not _has_systemd_python(),
    reason=f"systemd-python not importable by {sys.executable} "
    "(apt-get install libsystemd-dev pkg-config; pip install systemd-python)",
)

SEND_ONE = """
from systemd import journal
journal.send("verdict frame 42", SYSLOG_IDENTIFIER="inspectd-test", INSPECTD_VERDICT="PASS",
             INSPECTD_SCORE="0.731", INSPECTD_FRAME_ID="42", INSPECTD_MODEL_ID="demo-1")
"""

SEND_BURST = """
import sys
from systemd import journal
for i in range(int(sys.argv[1])):
    journal.send(f"burst {i}", SYSLOG_IDENTIFIER="inspectd-burst", INSPECTD_SEQ=str(i))
"""


def _run(jd, argv: list[str], stdin: bytes | None = None) -> None:
    proc = jd.run_inside(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(stdin, timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")


@needs_systemd_python
def test_structured_fields_from_systemd_python(tmp_path: Path) -> None:
    with private_journald(tmp_path) as jd:
        _run(jd, [sys.executable, "-c", SEND_ONE])
        records = jd.read_records(SYSLOG_IDENTIFIER="inspectd-test")
    assert len(records) == 1
    record = records[0]
    assert record["MESSAGE"] == "verdict frame 42"
    assert record["INSPECTD_VERDICT"] == "PASS"
    assert record["INSPECTD_SCORE"] == "0.731"
    assert record["INSPECTD_FRAME_ID"] == "42"
    assert record["INSPECTD_MODEL_ID"] == "demo-1"
    assert record["_TRANSPORT"] == "journal"
    assert record["_MACHINE_ID"] == jd.machine_id


def test_structured_fields_from_logger(tmp_path: Path) -> None:
    entry = b"MESSAGE=rejected frame 7\nSYSLOG_IDENTIFIER=inspectd-logger\nINSPECTD_VERDICT=REJECT\n"
    with private_journald(tmp_path) as jd:
        _run(jd, ["logger", "--journald"], stdin=entry)
        records = jd.read_records(INSPECTD_VERDICT="REJECT")
    assert [r["MESSAGE"] for r in records] == ["rejected frame 7"]
    assert records[0]["SYSLOG_IDENTIFIER"] == "inspectd-logger"


@needs_systemd_python
def test_burst_of_200_native_records_all_arrive(tmp_path: Path) -> None:
    with private_journald(tmp_path) as jd:
        _run(jd, [sys.executable, "-c", SEND_BURST, "200"])
        records = jd.wait_for_records(200, SYSLOG_IDENTIFIER="inspectd-burst")
    assert sorted(int(r["INSPECTD_SEQ"]) for r in records) == list(range(200))


@needs_systemd_python
def test_unit_records_are_attributed_and_not_rate_limited(tmp_path: Path) -> None:
    # journald rate-limits per unit (taken from the sender's cgroup); with no unit it never
    # limits, so the burst must come from a unit to show the harness config switches it off.
    with private_journald(tmp_path) as jd:
        _run_in_unit(jd, "inspectd.service", [sys.executable, "-c", SEND_BURST, "200"])
        records = jd.wait_for_records(200, _SYSTEMD_UNIT="inspectd.service")
    assert sorted(int(r["INSPECTD_SEQ"]) for r in records) == list(range(200))


@needs_systemd_python
def test_journald_default_style_rate_limit_drops_a_unit_burst(tmp_path: Path) -> None:
    # The control for the test above: a small RateLimitBurst really drops records.
    limited = JOURNALD_CONF.replace("RateLimitIntervalSec=0", "RateLimitIntervalSec=30s").replace(
        "RateLimitBurst=0", "RateLimitBurst=10"
    )
    with private_journald(tmp_path, conf=limited) as jd:
        _run_in_unit(jd, "inspectd.service", [sys.executable, "-c", SEND_BURST, "200"])
        records = jd.read_records(_SYSTEMD_UNIT="inspectd.service")
    assert 0 < len(records) < 200


def _run_in_unit(jd, unit: str, argv: list[str]) -> None:
    proc = jd.run_inside(argv, unit=unit, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")


def test_burst_of_200_stdout_lines_all_arrive(tmp_path: Path) -> None:
    lines = "".join(f"line {i}\n" for i in range(200)).encode()
    with private_journald(tmp_path) as jd:
        _run(jd, ["systemd-cat", "-t", "inspectd-cat"], stdin=lines)
        records = jd.wait_for_records(200, SYSLOG_IDENTIFIER="inspectd-cat")
    assert [r["MESSAGE"] for r in records] == [f"line {i}" for i in range(200)]


def test_cleanup_leaves_no_process_or_mount(tmp_path: Path) -> None:
    mounts_before = Path("/proc/self/mounts").read_text()
    with private_journald(tmp_path) as jd:
        sleeper = jd.run_inside(["sleep", "300"])
        pid = jd.pid
        assert Path("/proc/self/mounts").read_text() == mounts_before
    assert not os.path.exists(f"/proc/{pid}")
    assert sleeper.returncode is not None
    assert Path("/proc/self/mounts").read_text() == mounts_before
    # The store outlives journald: records can still be read after the context ends.
    assert any(r.get("SYSLOG_IDENTIFIER") == "systemd-journald" for r in jd.read_records(sync=False))
