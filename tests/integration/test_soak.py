"""bench/soak.py, short, into a real journald (a private one): frames and records equal and contiguous,
no descriptor or thread growth after warm-up, the archive within its quota."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from inspectd.testing.journald import private_journald, unavailable_reason

_reason = unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"private journald unavailable: {_reason}")


def test_short_soak_into_journald(tmp_path):
    report_path = tmp_path / "soak.json"
    with private_journald(tmp_path / "journal") as jd:
        proc = jd.run_inside([sys.executable, str(ROOT / "bench" / "soak.py"), "--frames", "400", "--quota-mb", "2",
                              "--work", str(tmp_path / "work"), "--json", str(report_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        out, err = proc.communicate(timeout=600)
    print(out)
    report = json.loads(report_path.read_text())
    assert proc.returncode == 0 and report["passed"], out + err[-2000:]
    assert report["verdict_records"] == 400 and report["frames_contiguous"] and report["rejects"] > 0
    assert report["archive_bytes"] <= 2 * 1024 * 1024 < report["archive_bytes"] * 3  # filled, rotated, within the quota
    assert report["at_end"]["fds"] <= report["after_warm_up"]["fds"]
    assert report["at_end"]["threads"] <= report["after_warm_up"]["threads"]
