"""The reject archive: whole files or none, a quota that counts everything in its folder, a full disk reported
once per episode, and a stop with the archive behind that is bounded and leaves no record naming a missing file.

Real parts: the demo model's verdicts on demo images, real small filesystems (tmpfs with a size or an inode
limit, mounted in a private mount namespace that vanishes with the scenario: ``unshare --mount``), a real
private journald and the daemon as a real process for SIGTERM.

Filesystem scenarios run this file as a script inside the namespace (``python tests/integration/test_archive.py NAME ARGS``)
and print what they saw as JSON; the tests judge it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL, ROOT
from inspectd.testing.journald import private_journald, unavailable_reason
from inspectd.daemon.demo.scene import generate_station_dataset
from inspectd.daemon.station.outputs.archive import ArchiveConfig, ArchiveOutput
from inspectd.daemon.station.outputs.archive_files import MARKER, TEMP_PREFIX, TEMP_SUFFIX
from inspectd.daemon.station.outputs.journal import MESSAGE_IDS
from inspectd.daemon.station.verdict import FrameVerdict, Verdict

TESTS = Path(__file__).resolve().parents[1]  # conftest.py, for this file run as a script
_reason = unavailable_reason()
needs_namespace = pytest.mark.skipif(_reason is not None, reason=f"no private mount namespace: {_reason}")


# ---------------------------------------------------------------- verdicts and files


def verdicts(images: list[Path], first: int = 1) -> list[FrameVerdict]:
    """REJECT verdicts with the demo model's real inspections of ``images``."""
    from inspectd.daemon.runtime.model import Model

    model = Model.load(DEMO_MODEL)
    made = []
    for number, path in enumerate(images, start=first):
        pixels = cv2.imread(str(path))
        inspection = model.infer(pixels, path.name)
        made.append(FrameVerdict(frame=number, source=path.name, verdict=Verdict.REJECT, score=inspection.score,
                                 rule=model.rule(), latency_ms=1.0, model_id=model.model_id, precision=model.precision, defect_area=None,
                                 inspection=inspection, pixels=pixels))
    return made


def every_file(folder: Path) -> list[Path]:
    """The station's files (not the marker that says the folder is its own)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def temporary(folder: Path) -> list[str]:
    return [p.name for p in every_file(folder) if p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX)]


def whole(path: Path, pixels: np.ndarray | None = None) -> bool:
    """A complete image file (it decodes), holding ``pixels`` when given."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image is not None and (pixels is None or np.array_equal(image, pixels))


@pytest.fixture(scope="module")
def stains(tmp_path_factory) -> list[Path]:
    data = generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=0, n_test_per_size=4)
    return sorted((data / "test").glob("stain_*/*.png"))


# ---------------------------------------------------------------- on an ordinary disk


def test_files_are_whole_lossless_and_a_killed_runs_temporary_files_go_at_start(stains, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / f"{TEMP_PREFIX}20250101-000000-00000007-reject.png{TEMP_SUFFIX}").write_bytes(b"\x89PNG half")  # kill -9 mid-write
    seen: list = []
    archive = ArchiveOutput(ArchiveConfig(path=str(folder)), seen.append)
    archive.start()
    assert temporary(folder) == []
    assert len(seen) == 1 and "killed while writing" in seen[0].message and seen[0].fields["fault"] == "archive"
    made = verdicts(stains[:3])
    for verdict in made:
        archive.verdict(verdict)
    archive.close()
    for verdict in made:
        assert verdict.archived is not None and whole(verdict.archived, verdict.pixels)  # lossless, decodes
        assert whole(verdict.archived.with_name(verdict.archived.stem + "-heatmap.jpg"))
    assert temporary(folder) == [] and len(every_file(folder)) == 6


def test_the_quota_counts_the_stations_files_and_holds_at_every_write(stains, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    leftovers = [folder / "20240101-000000-00000001-reject.png", folder / "20240101-000000-00000001-reject-heatmap.png",
                 folder / "20240101-000000-00000002-reject.png"]
    for age, path in enumerate(leftovers):
        path.write_bytes(b"\0" * (400_000 if "heatmap" in path.name else 0))  # an older version's archive: adopted
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    made = verdicts(stains * 2)
    quota_mb = 3.0
    archive = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=quota_mb))
    archive.start()
    assert archive.folder.used == 400_000  # counted: the station's files
    sizes = []
    for verdict in made:
        archive.verdict(verdict)
        archive.drain(time.monotonic() + 120)
        sizes.append(sum(p.stat().st_size for p in every_file(folder)))
    archive.close()
    assert max(sizes) <= quota_mb * 2**20, sizes
    assert not any(path.exists() for path in leftovers), "the oldest files go first"
    kept = [v for v in made if v.archived is not None and v.archived.exists()]
    assert kept and all(whole(v.archived, v.pixels) for v in kept)


def test_a_folder_deleted_while_running_is_made_again(stains, tmp_path):
    folder = tmp_path / "archive"
    seen: list = []
    archive = ArchiveOutput(ArchiveConfig(path=str(folder)), seen.append)
    first, second = verdicts(stains[:2])
    archive.verdict(first)
    archive.drain(time.monotonic() + 120)
    shutil.rmtree(folder)  # an operator cleaning up
    archive.verdict(second)
    archive.close()
    assert whole(second.archived, second.pixels) and seen == []


# ---------------------------------------------------------------- on a full disk (private mount namespace)


def in_namespace(scenario: str, **arguments) -> dict:
    """Runs ``scenario_<scenario>`` of this file in a private mount namespace; returns what it printed."""
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, __file__, scenario, json.dumps(arguments)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "inspectd-test", str(path)], check=True)


def free_bytes(path: Path) -> int:
    disk = os.statvfs(path)
    return disk.f_bavail * disk.f_frsize


def described(archive_notices: list, made: list[FrameVerdict], folder: Path) -> dict:
    return {
        "notices": [{"kind": str(n.kind), "message": n.message, "fields": {k: str(v) for k, v in n.fields.items()}}
                    for n in archive_notices],
        "named": [{"frame": v.frame, "path": str(v.archived), "whole": whole(v.archived, v.pixels)} for v in made if v.archived],
        "unnamed": [v.frame for v in made if v.archived is None],
        "files": [[str(p), p.stat().st_size, whole(p)] for p in every_file(folder)],
        "temporary": temporary(folder),
    }


def scenario_disk_full(images: list[str], work: str) -> dict:
    """The filesystem fills up twice (a filler file beside the archive), with room made in between."""
    disk = Path(work) / "disk"
    mount_tmpfs(disk, "size=8m")
    folder = disk / "archive"
    seen: list = []
    archive = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=100.0), seen.append)  # the quota is not what stops it
    archive.start()
    made = verdicts([Path(p) for p in images])
    filler = disk / "filler"

    def fill(leave: int) -> None:
        filler.unlink(missing_ok=True)
        filler.write_bytes(b"\0" * max(free_bytes(disk) - leave, 0))

    def feed(batch: list[FrameVerdict]) -> None:
        for verdict in batch:
            archive.verdict(verdict)
            archive.drain(time.monotonic() + 120)

    need = made[0].pixels.nbytes * 3  # what the archive asks the disk for, about
    fill(leave=int(need * 1.6))  # room for about one frame
    feed(made[:5])
    filler.unlink()  # room again
    feed(made[5:9])
    fill(leave=need // 4)  # full again
    feed(made[9:12])
    archive.close()
    return described(seen, made, folder)


def scenario_write_fails(images: list[str], work: str) -> dict:
    """The filesystem runs out of inodes: free bytes say yes, the write says ENOSPC; then files are deleted."""
    import inspectd.daemon.station.outputs.archive as module

    module.PROBE_EVERY_S = 0.0  # try every frame again at once: the scenario has no time to wait
    disk = Path(work) / "disk"
    mount_tmpfs(disk, "size=64m,nr_inodes=5")  # the root, the archive folder, its marker, and one frame with its heatmap
    folder = disk / "archive"
    seen: list = []
    archive = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=100.0), seen.append)
    archive.start()
    made = verdicts([Path(p) for p in images])
    for verdict in made[:4]:
        archive.verdict(verdict)
        archive.drain(time.monotonic() + 120)
    for path in every_file(folder):
        path.unlink()  # inodes again
    deleted = [v.frame for v in made if v.archived is not None and v.frame != 2]
    for verdict in made[4:5]:
        archive.verdict(verdict)
        archive.drain(time.monotonic() + 120)
    archive.close()
    return described(seen, made, folder) | {"deleted": deleted}


def scenario_full_while_frames_wait(images: list[str], work: str) -> dict:
    """The filesystem's inodes run out while frames taken (named by their records) wait to be written."""
    import inspectd.daemon.station.outputs.archive as module

    module.BACKLOG_S = 600.0  # a loaded machine's slow first write must not make it refuse the four as "behind"
    disk = Path(work) / "disk"
    mount_tmpfs(disk, "size=64m,nr_inodes=64")
    folder = disk / "archive"
    seen: list = []
    archive = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=100.0), seen.append)
    archive.start()
    made = verdicts([Path(p) for p in images])

    def written() -> None:
        with archive.lock:
            assert archive.lock.wait_for(lambda: not archive.pending and archive.current is None, timeout=120)

    archive.verdict(made[0])
    written()
    filler = 0
    try:
        while True:  # every inode taken: the bytes are free, the writes fail (ENOSPC)
            (disk / f"filler-{filler}").touch()
            filler += 1
    except OSError:
        pass
    with archive.lock:  # taken at once, each named by its record before it is written: the writer cannot fail the first
        for verdict in made[1:5]:  # (and so stop taking frames) before the last is handed over, however loaded the machine
            archive.verdict(verdict)
    written()
    before_stop = list(seen)
    archive.close()
    return described(before_stop, made, folder) | {"at_stop": [n.message for n in seen[len(before_stop):]]}


def scenario_station_on_a_small_disk(images: list[str], work: str) -> dict:
    """The whole station, its archive on a filesystem smaller than the quota."""
    from inspectd.daemon.station.config import load
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.outputs.memory import MemoryOutput

    disk = Path(work) / "disk"
    mount_tmpfs(disk, "size=6m")
    parts = Path(work) / "parts"
    parts.mkdir()
    for number, image in enumerate(images):
        shutil.copy(image, parts / f"{number:03d}.png")
    config = Path(work) / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{parts}"\n'
                      f'[journal]\nenabled = false\n[archive]\npath = "{disk / "archive"}"\nmax_mb = 100\n')
    memory = MemoryOutput()
    code = Station(load(config), extra_outputs=[memory]).run()
    seen = [e for e in memory.events if e.fields.get("fault") == "archive" or e.fields.get("recovered") == "archive"]
    report = described([], memory.verdicts, disk / "archive")
    report["notices"] = [{"kind": str(e.kind), "message": e.message, "fields": {k: str(v) for k, v in e.fields.items()}} for e in seen]
    report["code"], report["rejects"] = code, sum(v.rejected for v in memory.verdicts)
    return report


CAMERA = (1456, 1088)  # the Raspberry Pi Global Shutter camera's frame (width, height)
BURST = 200  # consecutive rejects (issue 14)


def scenario_burst(work: str) -> dict:
    """Issue 14: a burst of BURST rejects of camera frames, into a folder that keeps up (a tmpfs).

    Paced: each frame is given to the archive once the writer has taken the one before it, so one frame is written
    while the next waits: a burst into a writer at least as fast as the line. No clock decides anything here: the
    archive's rule takes a frame whenever the frames waiting would take less than BACKLOG_S to write at the speed it
    measured, so this pace is refused only if a camera frame took over BACKLOG_S / 2 to write (tens of times what it
    takes here on a loaded machine). Every reject must be archived: its frame lossless, its heatmap picture whole.

    Waves: the same frames given with no pause, WAVE at a time, the writer emptied between waves: more than it may take
    at once (BACKLOG_BYTES). Whatever it refuses must be in an episode its fault record opened, and each recovery record
    must count exactly the frames refused since."""
    from dataclasses import replace

    disk = Path(work) / "disk"
    mount_tmpfs(disk, "size=2g")
    data = generate_station_dataset(Path(work) / "mugs", n_train=0, n_test_good=0, n_test_per_size=2, width=CAMERA[0], height=CAMERA[1])
    camera = verdicts(sorted((data / "test").glob("stain_*/*.png")))
    assert all(v.pixels.shape == (CAMERA[1], CAMERA[0], 3) for v in camera)

    def burst(first: int, count: int) -> list[FrameVerdict]:
        return [replace(camera[n % len(camera)], frame=first + n, archived=None) for n in range(count)]

    def writer_took_all(archive: ArchiveOutput, idle: bool = False) -> None:
        """Until the writer has taken every frame given (``idle``: and written it). It signals when a frame is written,
        not when it takes one: looked at every 5 ms."""
        deadline = time.monotonic() + 600
        with archive.lock:
            while archive.pending or (idle and archive.current):
                assert time.monotonic() < deadline, "the writer is stuck"
                archive.lock.wait(0.005)

    seen: list = []
    paced = ArchiveOutput(ArchiveConfig(path=str(disk / "paced"), max_mb=1500.0), seen.append)
    made = burst(1, BURST)
    for verdict in made:
        writer_took_all(paced)
        paced.verdict(verdict)
    writer_took_all(paced, idle=True)
    paced.close()
    heatmaps = [whole(v.archived.with_name(v.archived.stem + "-heatmap.jpg")) for v in made if v.archived]
    result = {"paced": described(seen, made, disk / "paced") | {"heatmaps": heatmaps, "most_waiting": paced.stats.most_waiting}}
    shutil.rmtree(disk / "paced")

    wave, waves = 40, 3
    events: list[tuple[int, dict]] = []  # (frames given so far, the notice)
    given = 0
    behind = ArchiveOutput(ArchiveConfig(path=str(disk / "waves"), max_mb=1500.0),
                           lambda notice: events.append((given, {"kind": str(notice.kind), "message": notice.message,
                                                                 "fields": {k: str(v) for k, v in notice.fields.items()}})))
    made = burst(1, wave * waves)
    for start in range(0, len(made), wave):
        writer_took_all(behind, idle=True)
        for verdict in made[start:start + wave]:
            given += 1
            behind.verdict(verdict)
    writer_took_all(behind, idle=True)
    behind.close()
    return result | {"waves": described([], made, disk / "waves") | {"events": events}}


def check_files(seen: dict) -> None:
    """Every file whole, no temporary file; every image a record named holds its frame, unless a fault record says
    it was not written (INSPECTD_UNWRITTEN)."""
    assert seen["temporary"] == []
    assert all(size > 0 and is_whole for _, size, is_whole in seen["files"]), seen["files"]
    said = {int(frame) for n in seen["notices"] for frame in n["fields"].get("unwritten", "").split(", ") if frame}
    for named in seen["named"]:
        if named["frame"] not in seen.get("deleted", []):
            assert named["whole"] or named["frame"] in said, f"frame {named['frame']}: its record names {named['path']}, not written"


@needs_namespace
def test_a_full_disk_is_one_fault_per_episode_and_never_a_partial_file(stains, tmp_path):
    seen = in_namespace("disk_full", images=[str(p) for p in (stains * 2)[:12]], work=str(tmp_path))
    check_files(seen)
    kinds = [(n["kind"], n["fields"].get("fault") or n["fields"].get("recovered"), n["fields"].get("error")) for n in seen["notices"]]
    assert kinds == [("fault", "archive", "ENOSPC"), ("start", "archive", None), ("fault", "archive", "ENOSPC")], seen["notices"]
    assert "no room on the disk" in seen["notices"][0]["message"] and "until there is room" in seen["notices"][0]["message"]
    assert all("unwritten" not in n["fields"] for n in seen["notices"])  # foreseen: no frame was named and then not written
    missed = int(seen["notices"][1]["fields"]["missed"])
    assert missed >= 1 and missed == len([f for f in seen["unnamed"] if f <= 9]) , seen
    assert seen["unnamed"][-1] == 12 and len(seen["named"]) >= 4


@needs_namespace
def test_a_write_that_fails_after_the_frame_was_named_is_said_and_probes_end_the_episode(stains, tmp_path):
    seen = in_namespace("write_fails", images=[str(p) for p in stains[:6]], work=str(tmp_path))
    check_files(seen)
    first, last = seen["notices"]
    assert first["kind"] == "fault" and first["fields"]["error"] == "ENOSPC", first
    assert "frame 2: named by its record, not written" in first["message"] and first["fields"]["unwritten"] == "2"
    assert [n["frame"] for n in seen["named"]] == [1, 2]  # frames 3 and more were probes, not named
    assert not [n for n in seen["named"] if n["frame"] == 2][0]["whole"]  # named, not written: the fault record said so
    assert last["kind"] == "start" and last["fields"]["recovered"] == "archive" and last["fields"]["frame"] == "5"
    assert [last["fields"]["image"], True] in [[path, is_whole] for path, _, is_whole in seen["files"]]  # the probe it names
    assert last["fields"]["missed"] == "2", last  # frames 3 and 4: their probes failed


@needs_namespace
def test_frames_named_then_not_written_on_a_full_disk_are_said_when_it_happens_and_blamed_on_the_disk(stains, tmp_path):
    """Issue 17: they were said only at stop, as 'disk too slow'."""
    seen = in_namespace("full_while_frames_wait", images=[str(p) for p in stains[:5]], work=str(tmp_path))
    check_files(seen)  # every record naming an image not written is followed by a fault record saying so: before the stop
    unwritten = [named["frame"] for named in seen["named"] if not named["whole"]]
    assert unwritten == [2, 3, 4, 5], seen["named"]
    said = {int(frame): n for n in seen["notices"] for frame in n["fields"].get("unwritten", "").split(", ") if frame}
    assert sorted(said) == unwritten and all(n["fields"]["error"] == "ENOSPC" for n in said.values()), seen["notices"]
    assert not [n for n in seen["notices"] if "too slow" in n["message"]] and not seen["at_stop"], seen


@needs_namespace
def test_the_station_on_a_disk_smaller_than_the_quota(stains, tmp_path):
    seen = in_namespace("station_on_a_small_disk", images=[str(p) for p in (stains * 3)[:24]], work=str(tmp_path))
    assert seen["code"] == 0 and seen["rejects"] >= 20
    check_files(seen)
    kinds = [n["kind"] for n in seen["notices"]]
    assert kinds and kinds[0] == "fault" and kinds[-1] == "fault", seen["notices"]  # full at the end
    assert all(a != b for a, b in zip(kinds, kinds[1:])), kinds  # one fault record per episode, then one when it ends
    assert len(kinds) < seen["rejects"] / 2, "not a record per frame"
    assert all(n["fields"].get("error") == "ENOSPC" for n in seen["notices"] if n["kind"] == "fault")
    assert seen["named"] and seen["unnamed"], "some frames archived, then the disk was full"


@needs_namespace
def test_a_burst_of_camera_rejects_loses_no_picture_when_the_disk_keeps_up(tmp_path):
    seen = in_namespace("burst", work=str(tmp_path))
    paced = seen["paced"]
    check_files(paced)
    assert paced["notices"] == [] and paced["unnamed"] == [], (paced["notices"], paced["unnamed"])  # no refusal, no fault
    assert [n["frame"] for n in paced["named"]] == list(range(1, BURST + 1))
    assert all(n["whole"] for n in paced["named"]), "every frame on the disk, lossless"
    assert len(paced["heatmaps"]) == BURST and all(paced["heatmaps"]), "every heatmap picture whole"
    assert len(paced["files"]) == 2 * BURST and paced["most_waiting"] == 2, "a frame written while the next one waited: a burst"

    waves = seen["waves"]
    check_files(waves)
    assert all(n["whole"] for n in waves["named"])
    refused, events = set(waves["unnamed"]), waves["events"]
    assert refused, "the waves were meant to be more than the archive takes at once"
    kinds = [(event["kind"], event["fields"].get("fault") or event["fields"].get("recovered")) for _, event in events]
    assert kinds and all(kind == (("fault" if n % 2 == 0 else "start"), "archive") for n, kind in enumerate(kinds)), kinds
    opened = [given for given, event in events if event["kind"] == "fault"]
    closed = [given for given, event in events if event["kind"] == "start"] + [len(waves["named"]) + len(refused)]
    for begin, end, (_, event) in zip(opened, closed, [*[e for e in events if e[1]["kind"] == "start"], (None, None)]):
        inside = {frame for frame in refused if begin <= frame <= end}
        assert min(inside) == begin, "the first frame refused opens its episode with a fault record"
        if event is not None:
            assert int(event["fields"]["missed"]) == len(inside), (event, sorted(inside))
    assert sum(len({f for f in refused if b <= f <= e}) for b, e in zip(opened, closed)) == len(refused), "every refusal in an episode"


# ---------------------------------------------------------------- SIGTERM with the archive behind (real journald)


def _journald_reason() -> str | None:
    if _reason:
        return _reason
    if subprocess.run([sys.executable, "-c", "import systemd.journal"], capture_output=True).returncode:
        return "systemd-python not importable"
    return None


TIMEOUT_STOP_S = 15  # the unit's TimeoutStopSec: systemd kills a stop that takes longer


@pytest.mark.skipif(_journald_reason() is not None, reason=f"private journald unavailable: {_journald_reason()}")
def test_sigterm_with_the_archive_behind_ends_cleanly_and_every_named_image_exists(tmp_path):
    """Large rejects (20 megapixels) replayed in a loop: writing one takes several times longer than judging it, so
    the archive is behind all along. SIGTERM comes as soon as a second frame is taken for the archive (it has all
    its writing ahead). The run must end with status 0 before systemd would kill it, with no abort, and every
    INSPECTD_IMAGE in the journal must be a whole PNG of its frame, or be named in a fault record as not written."""
    data = generate_station_dataset(tmp_path / "mugs", n_train=0, n_test_good=0, n_test_per_size=1)
    parts = tmp_path / "parts"
    parts.mkdir()
    for number, image in enumerate(sorted((data / "test").glob("stain_*/*.png"))):
        large = cv2.resize(cv2.imread(str(image)), (5200, 3900), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(parts / f"{number:03d}.png"), large, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    archive = tmp_path / "archive"
    config = tmp_path / "inspectd.toml"
    config.write_text(f'[model]\npath = "{DEMO_MODEL}"\n[source]\nkind = "directory"\npath = "{parts}"\nmode = "loop"\n'
                      f'[journal]\nenabled = true\n[archive]\npath = "{archive}"\nmax_mb = 2000\n')
    with private_journald(tmp_path) as jd:
        daemon = jd.run_inside([sys.executable, "-m", "inspectd.daemon.cli", "run", "--config", str(config)], unit="inspectd.service",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            while len([r for r in jd.read_records(_SYSTEMD_UNIT="inspectd.service", MESSAGE_ID=MESSAGE_IDS["verdict"])
                       if "INSPECTD_IMAGE" in r]) < 2:
                assert daemon.poll() is None and time.monotonic() < deadline, "the daemon should be running and archiving"
                time.sleep(0.1)
            stopped_at = time.time()
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=TIMEOUT_STOP_S)
        finally:
            daemon.kill()
        records = jd.read_records(_SYSTEMD_UNIT="inspectd.service")
    assert daemon.returncode == 0, stderr[-2000:]
    assert "terminate called" not in stderr and "Fatal Python error" not in stderr, stderr[-2000:]
    verdicts = [r for r in records if r.get("MESSAGE_ID") == MESSAGE_IDS["verdict"]]
    assert [int(r["INSPECTD_FRAME"]) for r in verdicts] == list(range(1, len(verdicts) + 1)), "every verdict, in frame order"
    assert records[-1].get("MESSAGE_ID") == MESSAGE_IDS["stop"]
    retracted = {int(frame) for r in records if r.get("INSPECTD_UNWRITTEN") for frame in r["INSPECTD_UNWRITTEN"].split(", ")}
    named = [r for r in verdicts if "INSPECTD_IMAGE" in r]
    assert len(named) >= 2
    for record in named:
        if int(record["INSPECTD_FRAME"]) in retracted:
            continue
        image = Path(record["INSPECTD_IMAGE"])
        assert whole(image, cv2.imread(str(parts / record["INSPECTD_SOURCE"]))), f"frame {record['INSPECTD_FRAME']}: {image}"
        assert whole(image.with_name(image.stem + "-heatmap.jpg"))
    assert temporary(archive) == []
    assert max(p.stat().st_mtime for p in every_file(archive)) > stopped_at, "the stop had frames left to write"


if __name__ == "__main__":  # a filesystem scenario, inside the private mount namespace in_namespace() made
    print(json.dumps(globals()[f"scenario_{sys.argv[1]}"](**json.loads(sys.argv[2]))))
