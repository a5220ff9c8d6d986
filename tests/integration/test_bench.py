"""Smoke runs of the benchmarks: they run end to end and report every figure (no timing asserts)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT, needs_export, run_cli


def test_inspectd_bench_reports_the_device_figures(demo_model):
    result = run_cli("bench", demo_model, "--frames", "3", "--width", "640", "--height", "480")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^precision    (f32|f16|bf16) in use", result.stdout, re.M), result.stdout  # the demo folder runs at f16 where f16 is native
    for label in ("pre-process  median", "infer        median", "graph cost", "peak memory"):
        assert label in result.stdout, result.stdout
    # read from the folder's metadata
    verified = json.loads((demo_model / "inspectd.json").read_text())["runtime"]["verified_precisions"]
    assert "PaDiM tf_efficientnet_lite0 128x128, 1024 positions x 100 features" in result.stdout
    assert f"verified at export: {', '.join(verified)})" in result.stdout
    # README's Pi 5 table, this folder's row: its cost, the latency measured here, the two projections
    from inspectd.daemon.cli.bench import TABLE_HEADER

    lines = result.stdout.splitlines()
    row = lines[lines.index(TABLE_HEADER) + 2].split("|")[1:-1]
    assert row[0].strip() == "tf_efficientnet_lite0 / 128x128", row
    assert all(float(cell.split()[0]) > 0 for cell in row[1:]), row
    assert float(row[5]) <= float(row[4]), row  # f16 projected no slower than f32


@needs_export
def test_compare_runs_every_contender(cookie_checkpoint, cookie, tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--data", str(cookie), "--checkpoint", str(cookie_checkpoint),
                             "--work", str(tmp_path / "work"), "--rounds", "1", "--frames", "4", "--json", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["table"]) == {"inspectd", "daemon", "openvino-inferencer", "torch-inferencer", "bare-ir"}
    for row in report["table"].values():
        assert row["latency_median_ms"] > 0 and row["peak_rss_mib"] > 0 and row["cold_start_s"] > 0 and row["model_mib"] > 0
    assert report["table"]["daemon"]["fps_pipelined"] > 0
    assert {r["what"] for r in report["ratios"]} >= {"latency inspectd / OpenVINOInferencer", "peak RSS inspectd / OpenVINOInferencer",
                                                   "cold start inspectd / OpenVINOInferencer", "latency inspectd / TorchInferencer",
                                                   "daemon cycle / inspectd inference"}
    assert "| ratio | measured | target |" in result.stdout
