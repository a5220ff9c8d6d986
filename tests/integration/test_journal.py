"""The station daemon's journald records, read back from a real systemd-journald.

`inspectd run` replays a folder of images (source mode "once") inside a private journald
(tests/harness/journald.py), in a cgroup named inspectd.service as under systemd; the
records are read back with `journalctl -D <store> -o json` and checked field by field,
and the verdicts are compared with `inspectd infer --json` on the same images.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_cli
from inspectd.testing.journald import private_journald, unavailable_reason
from inspectd.daemon.station.outputs.journal import MESSAGE_IDS
from inspectd.daemon.demo.scene import generate_station_dataset

UNIT = "inspectd.service"
CATALOG = ROOT / "systemd" / "inspectd.catalog"

# The documented MESSAGE_IDs (systemd/inspectd.catalog); operators filter on these.
VERDICT = "5a01ba8d9a354266b5189ac90117b557"
FAULT = "b1a6b1f25a3e4221ab82c0f6673f994f"
START = "0f12c7ed6efb4275beec27b55c91abde"
STOP = "4524c69a4ea1475bbf70cdc8b03c4973"
RELOAD = "960be9cf77f44ea886f0c8ff08625ec6"
SUMMARY = "b2b7174efc2f4cce9b3c917ef77d620a"
PRECISION_FALLBACK = "7ce843afd9d44cf6a483da1844086b4a"
DRIFT = "295411a410124cc2b5d65b66b86e769e"
DRIFT_OVER = "fbf4e0beac2e4907841157c796b34b46"
DOCUMENTED_IDS = {"verdict": VERDICT, "fault": FAULT, "start": START, "stop": STOP, "reload": RELOAD, "summary": SUMMARY,
                  "precision": PRECISION_FALLBACK, "drift": DRIFT, "drift-over": DRIFT_OVER}


def _systemd_python_reason() -> str | None:
    probe = subprocess.run([sys.executable, "-c", "import systemd.journal"], capture_output=True)
    if probe.returncode != 0:
        return f"systemd-python not importable by {sys.executable} (Debian: python3-systemd; PyPI: systemd-python)"
    return None


_reason = unavailable_reason() or _systemd_python_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"private journald unavailable: {_reason}")


# ---------------------------------------------------------------- images and expectations


def flat_copy(folders: dict[str, list[Path]], out: Path) -> list[Path]:
    """One folder of images named <class>_<name>, so the name alone says where each came from."""
    out.mkdir(parents=True)
    for label, paths in folders.items():
        for path in paths:
            shutil.copy(path, out / f"{label}_{path.name}")
    return sorted(out.iterdir())


def infer_json(model: Path, images: list[Path]) -> dict[str, dict]:
    """`inspectd infer --json`, keyed by file name."""
    result = run_cli("infer", model, *images, "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(r["image"]).name: r for r in records}


@pytest.fixture(scope="module")
def cookie_images(cookie: Path, tmp_path_factory) -> list[Path]:
    classes = {folder.name: sorted(folder.glob("*.jpg")) for folder in sorted((cookie / "test").iterdir()) if folder.is_dir()}
    images = flat_copy(classes, tmp_path_factory.mktemp("cookie") / "images")
    assert len(images) == 46, f"expected the 46 cookie test images, found {len(images)}"
    return images


@pytest.fixture(scope="module")
def cookie_expected(cookie_model: Path, cookie_images: list[Path]) -> dict[str, dict]:
    return infer_json(cookie_model, cookie_images)


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory) -> list[Path]:
    data = generate_station_dataset(tmp_path_factory.mktemp("demo") / "data", n_train=0, n_test_good=6, n_test_per_size=3)
    classes = {folder.name: sorted(folder.glob("*.png")) for folder in sorted((data / "test").iterdir())}
    return flat_copy(classes, data / "flat")


# ---------------------------------------------------------------- running the daemon


@dataclass
class Run:
    records: list[dict]  # every record of the inspectd.service cgroup, oldest first
    archive: Path
    store: Path  # the journal folder, for journalctl -D
    stderr: str

    def with_id(self, message_id: str) -> list[dict]:
        return [r for r in self.records if r.get("MESSAGE_ID") == message_id]


def run_station(tmp_path: Path, model: Path, folder: Path, log: str = "all") -> Run:
    tmp_path.mkdir(parents=True, exist_ok=True)
    archive = tmp_path / "archive"
    config = tmp_path / "inspectd.toml"
    config.write_text(
        f"[model]\npath = {json.dumps(str(model))}\n\n"
        f'[source]\nkind = "directory"\npath = {json.dumps(str(folder))}\nmode = "once"\n\n'
        # A long summary interval: with log = "rejects" the only summary is the one at stop.
        f'[journal]\nenabled = true\nlog = "{log}"\nsummary_interval_s = 3600.0\n\n'
        f"[archive]\nenabled = true\npath = {json.dumps(str(archive))}\n"
    )
    with private_journald(tmp_path) as jd:
        proc = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)],
                             unit=UNIT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        records = jd.read_records(_SYSTEMD_UNIT=UNIT)
        store = jd.store
    return Run(records, archive, store, stderr)


def seconds(record: dict) -> float:
    """When journald received the record (monotonic clock, seconds)."""
    return int(record["__MONOTONIC_TIMESTAMP"]) / 1e6


def model_sha256(model: Path) -> str:
    return hashlib.sha256((model / "model.bin").read_bytes()).hexdigest()


# ---------------------------------------------------------------- checks shared by the tests


def check_all_mode(run: Run, model: Path, images: list[Path], expected: dict[str, dict]) -> None:
    names = [image.name for image in images]  # the directory source replays in name order
    model_id = model_sha256(model)
    assert "inspectd:" not in run.stderr, "with a journal present nothing may fall back to stderr"
    assert all(r["SYSLOG_IDENTIFIER"] == "inspectd" and r["_TRANSPORT"] == "journal" for r in run.records)
    # The only fault a loaded machine may rightly give here: the archive falling behind (checked per REJECT below).
    assert all(is_archive_behind(r) for r in run.with_id(FAULT)), run.with_id(FAULT)

    verdicts = run.with_id(VERDICT)
    assert len(verdicts) == len(images), "exactly one verdict record per image, none lost"
    assert [int(r["INSPECTD_FRAME"]) for r in verdicts] == list(range(1, len(images) + 1))
    assert [r["INSPECTD_SOURCE"] for r in verdicts] == names

    for record in verdicts:
        want = expected[record["INSPECTD_SOURCE"]]
        verdict = record["INSPECTD_VERDICT"]
        assert verdict == want["verdict"], f"{record['INSPECTD_SOURCE']}: daemon {verdict}, inspectd infer {want['verdict']}"
        assert record["PRIORITY"] == {"REJECT": "4", "PASS": "6"}[verdict]
        assert record["INSPECTD_MODEL"] == model_id
        score, threshold = float(record["INSPECTD_SCORE"]), float(record["INSPECTD_THRESHOLD"])
        assert score == pytest.approx(want["score"], abs=1e-3 * want["threshold"])
        assert threshold == pytest.approx(want["threshold"], abs=1e-4)
        assert float(record["INSPECTD_LATENCY_MS"]) > 0
        assert record["MESSAGE"].startswith(f"{verdict} frame {record['INSPECTD_FRAME']} score ")
        assert record["MESSAGE"].endswith(record["INSPECTD_SOURCE"])
        if verdict == "REJECT":
            check_archived_or_said(run, record, images[0].parent)
        else:
            assert "INSPECTD_IMAGE" not in record  # pass_sample_every = 0: passes are not archived

    # Each cycle runs after the start record and ends before its own record is sent, one at a time:
    # together they fit between the start record and the last verdict (milliseconds, not seconds or microseconds).
    run_s = seconds(verdicts[-1]) - seconds(run.with_id(START)[0])
    assert sum(float(r["INSPECTD_LATENCY_MS"]) for r in verdicts) / 1000 <= run_s + 0.2

    kinds = {r["INSPECTD_VERDICT"] for r in verdicts}
    assert kinds == {"PASS", "REJECT"}, f"the images should give both verdicts, got only {kinds}"
    rejects = sum(r["INSPECTD_VERDICT"] == "REJECT" for r in verdicts)
    check_start_and_stop(run, model_id, len(images), rejects)


def is_archive_behind(record: dict) -> bool:
    return record.get("INSPECTD_FAULT") == "archive" and record.get("INSPECTD_ERROR") == "behind"


def check_archived_or_said(run: Run, record: dict, image_folder: Path) -> None:
    """What the station promises for a REJECT: its picture archived, or its record without INSPECTD_IMAGE after a fault
    record saying the archive fell behind (a loaded machine; the verdict is never held up for the archive)."""
    if "INSPECTD_IMAGE" in record:
        check_archived(record, run.archive, image_folder)
        return
    at = run.records.index(record)
    assert any(is_archive_behind(r) for r in run.records[:at]), f"frame {record['INSPECTD_FRAME']}: not archived, and no record says why"


def check_archived(record: dict, archive: Path, image_folder: Path) -> None:
    image = Path(record["INSPECTD_IMAGE"])
    assert image.parent == archive and image.suffix == ".png", image
    assert image.is_file(), f"frame {record['INSPECTD_FRAME']}: INSPECTD_IMAGE {image} does not exist"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.with_name(image.stem + "-heatmap.jpg").is_file()
    # Lossless: the archived frame is exactly the frame that was scored.
    original = cv2.imread(str(image_folder / record["INSPECTD_SOURCE"]))
    assert np.array_equal(cv2.imread(str(image)), original)


def check_start_and_stop(run: Run, model_id: str, frames: int, rejects: int) -> None:
    starts, stops = run.with_id(START), run.with_id(STOP)
    assert len(starts) == 1 and len(stops) == 1
    assert run.records[0] is starts[0], "the start record comes first"
    assert starts[0]["INSPECTD_MODEL"] == model_id
    assert starts[0]["INSPECTD_PRECISION"] in ("f32", "f16", "bf16") and f"at {starts[0]['INSPECTD_PRECISION']}" in starts[0]["MESSAGE"]
    assert stops[0]["INSPECTD_FRAMES"] == str(frames)
    assert stops[0]["INSPECTD_REJECTS"] == str(rejects)
    stop_at = run.records.index(stops[0])
    assert all(r.get("MESSAGE_ID") != VERDICT for r in run.records[stop_at:]), "no verdict after the stop record"


# ---------------------------------------------------------------- tests


def test_cookie_replay_one_record_per_image_matching_infer(cookie_model, cookie_images, cookie_expected, tmp_path):
    run = run_station(tmp_path, cookie_model, cookie_images[0].parent, log="all")
    check_all_mode(run, cookie_model, cookie_images, cookie_expected)
    archived = sorted(p.name for p in run.archive.glob("*.png") if "-heatmap" not in p.name)
    assert len(archived) == sum(r["INSPECTD_VERDICT"] == "REJECT" and "INSPECTD_IMAGE" in r for r in run.with_id(VERDICT))


def test_cookie_replay_log_rejects_only(cookie_model, cookie_images, cookie_expected, tmp_path):
    run = run_station(tmp_path, cookie_model, cookie_images[0].parent, log="rejects")
    names = [image.name for image in cookie_images]
    rejected = [name for name in names if cookie_expected[name]["verdict"] == "REJECT"]
    assert rejected, "the cookie test images should hold rejects"

    verdicts = run.with_id(VERDICT)
    assert [r["INSPECTD_VERDICT"] for r in verdicts] == ["REJECT"] * len(rejected)
    assert [r["INSPECTD_SOURCE"] for r in verdicts] == rejected
    assert [int(r["INSPECTD_FRAME"]) for r in verdicts] == [names.index(name) + 1 for name in rejected]
    for record in verdicts:
        assert record["PRIORITY"] == "4"
        check_archived_or_said(run, record, cookie_images[0].parent)

    summaries = run.with_id(SUMMARY)
    assert len(summaries) == 1, "one summary, at stop"
    summary = summaries[0]
    assert summary["INSPECTD_FRAMES"] == str(len(names))
    assert summary["INSPECTD_REJECTS"] == str(len(rejected))
    # The rate is the frames over the run: the summary's window opens as the run starts and closes at the summary.
    window_s = int(summary["INSPECTD_FRAMES"]) / float(summary["INSPECTD_FPS"])
    assert window_s == pytest.approx(seconds(summary) - seconds(run.with_id(START)[0]), abs=0.5)
    assert summary["PRIORITY"] == "6"
    assert run.records.index(summary) > run.records.index(run.with_id(STOP)[0])
    check_start_and_stop(run, model_sha256(cookie_model), len(names), len(rejected))


def test_demo_replay_without_torch(demo_model, demo_images, tmp_path):
    """The same checks with the shipped demo model and synthetic images: runs where torch does not."""
    expected = infer_json(demo_model, demo_images)
    run = run_station(tmp_path, demo_model, demo_images[0].parent, log="all")
    check_all_mode(run, demo_model, demo_images, expected)


def test_code_and_catalog_use_the_documented_message_ids():
    assert MESSAGE_IDS == DOCUMENTED_IDS


def catalog_root(tmp_path: Path) -> Path:
    """A root holding only inspectd's catalog and the database `journalctl --root --update-catalog` builds from it."""
    root = tmp_path / "catalog-root"
    (root / "usr/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy(CATALOG, root / "usr/lib/systemd/catalog" / CATALOG.name)
    update = subprocess.run(["journalctl", f"--root={root}", "--update-catalog"], capture_output=True, text=True)
    assert update.returncode == 0 and not update.stderr.strip(), update.stderr
    return root


def test_catalog_parses_and_defines_every_message_id(tmp_path):
    root = catalog_root(tmp_path)
    listed = subprocess.run(["journalctl", f"--root={root}", "--list-catalog"], capture_output=True, text=True, check=True).stdout
    ids = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert ids == set(DOCUMENTED_IDS.values())
    dumped = subprocess.run(["journalctl", f"--root={root}", "--dump-catalog", VERDICT], capture_output=True, text=True, check=True).stdout
    assert "Subject: inspectd verdict @INSPECTD_VERDICT@ for frame @INSPECTD_FRAME@" in dumped


def test_journalctl_x_explains_a_verdict_record(demo_model, demo_images, tmp_path):
    """`journalctl -x` with the catalog fills the explanation from the record's own fields.

    journalctl reads the catalog database at a fixed path; here a private mount namespace puts
    the test's database over it, so the host's catalog is never touched.
    """
    host_catalog = Path("/var/lib/systemd/catalog")
    if not host_catalog.is_dir():
        pytest.skip(f"{host_catalog} is absent: nothing to bind the test catalog over")
    root = catalog_root(tmp_path)
    run = run_station(tmp_path / "run", demo_model, demo_images[0].parent, log="rejects")
    reject = run.with_id(VERDICT)[0]
    explained = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" /var/lib/systemd/catalog && exec journalctl --no-pager -x -D "$2" "$3"', "explain",
         str(root / "var/lib/systemd/catalog"), str(run.store), f"INSPECTD_FRAME={reject['INSPECTD_FRAME']}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"Subject: inspectd verdict REJECT for frame {reject['INSPECTD_FRAME']}" in explained
    assert f"from {reject['INSPECTD_SOURCE']} at {reject['INSPECTD_SCORE']}" in explained
    assert f"archived as {reject['INSPECTD_IMAGE']}." in explained
