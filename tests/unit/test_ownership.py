"""Issue 17, class 1: the station deletes or overwrites only what is its own.

The archive keeps its quota by deleting its oldest files. Every layout where its folder is, holds or lies
inside something the station reads (the model folder, the configuration file, a source) is refused by the
configuration itself, so ``check``, ``run`` and a reload all refuse it; a folder that holds anything but the
station's own files is not taken; in a folder it took, the quota deletes only files it wrote; a symlink that
replaces the folder (or its parent) while the station runs is never followed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import synthetic_verdict
from inspectd.daemon.errors import ConfigError
from inspectd.daemon.station.config import read
from inspectd.daemon.station.outputs.archive import ArchiveConfig, ArchiveOutput
from inspectd.daemon.station.verdict import FrameVerdict

TARGETS = ("model", "config", "once", "loop", "watch")  # what the station reads: the model folder, this file, a source folder by mode
RELATIONS = ("is", "inside", "deep inside", "parent", "grandparent", "link to it", "link to its parent", "dotted", "sibling")


def layout(root: Path, target: str, relation: str) -> tuple[Path, str]:
    """A station's files under ``root`` and an archive path in ``relation`` to ``target``; the configuration's path."""
    for folder in ("state/model", "state/parts", "etc"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "state/model/model.bin").write_bytes(b"weights")
    (root / "state/parts/part.png").write_bytes(b"")
    config = root / "etc/inspectd.toml"
    thing = {"model": root / "state/model", "config": config}.get(target, root / "state/parts")
    links = root / "links"
    links.mkdir(exist_ok=True)
    archive = {"is": thing, "inside": thing / "rejects", "deep inside": thing / "a" / "b", "parent": thing.parent,
               "grandparent": thing.parent.parent, "dotted": Path(f"{thing.parent}/./x/../{thing.name}"),
               "sibling": thing.parent / f"{thing.name}-rejects"}.get(relation)
    if relation.startswith("link"):
        archive = links / f"to-{target}-{relation.replace(' ', '-')}"
        if not archive.is_symlink():
            archive.symlink_to(thing if relation == "link to it" else thing.parent)
    mode = target if target in ("once", "loop", "watch") else "once"
    config.write_text(f'[model]\npath = "{root / "state/model"}"\n[source]\nkind = "directory"\npath = "{root / "state/parts"}"\n'
                      f'mode = "{mode}"\n[archive]\npath = "{archive}"\n')
    return config, str(archive)


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), relation=st.sampled_from(RELATIONS))
def test_every_layout_where_the_archive_overlaps_what_the_station_reads_is_refused(tmp_path, target, relation):
    config, archive = layout(tmp_path, target, relation)
    parsed, errors = read(config)
    archive_errors = [error for error in errors if error.key == "archive.path"]
    if relation == "sibling":
        assert archive_errors == [], errors
        return
    assert len(archive_errors) == 1, (target, relation, errors)
    line = str(archive_errors[0])
    assert line.startswith(f"{config}: key archive.path: '{archive}' ") and "\n" not in line and "folder of its own" in line, line


def test_the_overlap_catalogue(tmp_path):
    """Every target x relation, counted for the closing note (check and run read the file this way, and so does a reload)."""
    refused = accepted = 0
    for target in TARGETS:
        for relation in RELATIONS:
            config, _ = layout(tmp_path / f"{target}-{relation.replace(' ', '-')}", target, relation)
            bad = any(error.key == "archive.path" for error in read(config)[1])
            assert bad == (relation != "sibling"), (target, relation)
            refused += bad
            accepted += not bad
    print(f"\nownership: {refused} overlapping layouts refused, {accepted} apart accepted")


# ---------------------------------------------------------------- the folder and its files


def archive_frames(folder: Path, frames: range, max_mb: float = 50.0) -> list[FrameVerdict]:
    output = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=max_mb))
    made = []
    try:
        output.start()
        for frame in frames:
            made.append(synthetic_verdict(frame))
            output.verdict(made[-1])
            output.drain(time.monotonic() + 60)
    finally:
        output.close()
    return made


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


NAMES = st.one_of(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/\\"), min_size=1, max_size=20),
                  st.sampled_from(["model.bin", "inspectd.json", "part.png", "20240101-000000-00000001-reject.png.bak",
                                   "20240101-000000-1-reject.png", "notes", "train", "inspectd.toml"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, min_size=1, max_size=6, unique=True), kind=st.sampled_from(["file", "folder", "symlink"]))
def test_a_folder_holding_anything_else_is_not_taken_and_nothing_in_it_changes(tmp_path, names, kind):
    folder = tmp_path / f"archive-{time.monotonic_ns()}"
    folder.mkdir()
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"not the station's")
    for name in names:
        if name in (".", ".."):
            continue
        entry = folder / name
        if kind == "file":
            entry.write_bytes(b"x" * 4000)
        elif kind == "folder":
            entry.mkdir()
        else:
            entry.symlink_to(victim)
    if not any(folder.iterdir()):
        return  # nothing but "." and "..": an empty folder is the station's to take
    before = snapshot(folder)
    with pytest.raises(ConfigError, match=r"key archive.path: .* holds \d+ entries that are not the station's"):
        archive_frames(folder, range(1, 4), max_mb=0.001)
    assert snapshot(folder) == before and victim.read_bytes() == b"not the station's"


def test_in_its_own_folder_the_quota_deletes_only_the_stations_files(tmp_path):
    """Files put into the station's folder later (by hand, by another tool) are never deleted, whatever they are named."""
    folder = tmp_path / "rejects"
    first = archive_frames(folder, range(1, 3))
    others = {"notes.txt": b"a person's notes", "20240101-000000-00000001-reject.png.keep": b"kept by hand",
              "training/000.png": b"a training image"}
    for name, data in others.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
        os.utime(folder / name, (1_000_000, 1_000_000))  # older than anything the station wrote
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"elsewhere")
    (folder / "20240101-000000-00000009-reject.png").symlink_to(victim)  # named like the station's, but a link
    one = sum(p.stat().st_size for p in folder.glob("*-00000001-*"))  # a frame and its heatmap picture
    later = archive_frames(folder, range(3, 9), max_mb=3.5 * one / 2**20)
    assert all((folder / name).read_bytes() == data for name, data in others.items())
    assert victim.read_bytes() == b"elsewhere" and (folder / "20240101-000000-00000009-reject.png").is_symlink()
    kept = sorted(int(p.name.split("-")[2]) for p in folder.glob("*-reject.png") if not p.is_symlink())
    assert kept == [6, 7, 8], "the oldest of its own files went, to keep within the quota"
    assert all(v.archived is not None for v in first + later)


def test_an_archive_of_an_older_version_is_adopted(tmp_path):
    """A folder holding nothing but files named as the archive names them is the station's: taken, its quota applies."""
    folder = tmp_path / "rejects"
    folder.mkdir()
    old = folder / "20240101-000000-00000001-reject.png"
    old.write_bytes(b"\0" * 200_000)
    os.utime(old, (1_000_000, 1_000_000))
    archive_frames(folder, range(2, 4), max_mb=0.2)
    assert not old.exists()


@pytest.mark.parametrize("how", ["folder moved away, a symlink in its place", "folder deleted, a symlink in its place",
                                 "parent moved away, a symlink in its place", "folder deleted, a folder of someone else's in its place"])
def test_a_symlink_or_folder_put_in_place_of_the_archive_is_never_written_into(tmp_path, how):
    parent = tmp_path / "state"
    folder = parent / "rejects"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_bytes(b"precious")
    seen: list = []
    output = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=50.0), seen.append)
    try:
        output.start()
        output.verdict(synthetic_verdict(1))
        output.drain(time.monotonic() + 60)
        if how.startswith("folder moved"):
            folder.rename(parent / "rejects.old")
            folder.symlink_to(victim)
        elif how.startswith("parent moved"):
            parent.rename(tmp_path / "state.old")
            parent.symlink_to(victim)
        else:
            shutil.rmtree(folder)
            if how.endswith("symlink in its place"):
                folder.symlink_to(victim)
            else:
                folder.mkdir()
                (folder / "theirs.txt").write_bytes(b"theirs")
        for frame in range(2, 6):
            output.verdict(synthetic_verdict(frame))
            output.drain(time.monotonic() + 60)
    finally:
        output.close()
    assert snapshot(victim) == {"precious.txt": b"precious"}, "nothing written into the folder the link points to"
    if how.endswith("someone else's in its place"):
        assert snapshot(folder) == {"theirs.txt": b"theirs"}
    if how.startswith("folder deleted"):
        assert any(notice.fields.get("fault") == "archive" for notice in seen), "frames not archived: a fault record says why"
    else:  # the folder the station took still exists, moved: it goes on writing there, and only there
        moved = tmp_path / "state" / "rejects.old" if how.startswith("folder") else tmp_path / "state.old" / "rejects"
        assert sorted(int(p.name.split("-")[2]) for p in moved.glob("*-reject.png")) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("sub", ["inspected", "failed", "skipped"])
def test_a_watched_folders_sub_folder_replaced_by_a_symlink_is_never_moved_into(tmp_path, sub):
    """A part is moved out of a watched folder into the station's inspected/, failed/ or skipped/: never through a link."""
    from inspectd.daemon.station.sources import BadFrame, DirectoryConfig

    watched = tmp_path / "incoming"
    watched.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (watched / sub).symlink_to(victim)
    name = "part.png"
    if sub == "failed":
        (watched / name).write_bytes(b"not an image")
    else:
        import cv2
        import numpy as np

        cv2.imwrite(str(watched / name), np.zeros((8, 8, 3), np.uint8))
    os.utime(watched / name, (1_000_000, 1_000_000))  # settled, and undecodable long enough to be given up
    config = DirectoryConfig(path=str(watched), mode="watch", settle_s=0.0, backlog="skip" if sub == "skipped" else "inspect")
    source = config.open()
    notes = []
    try:
        for _ in range(4):
            try:
                frame = source.read(0.2)
            except BadFrame as note:
                notes.append(str(note))
                continue
            if frame is not None and frame.done is not None:
                frame.done()
    finally:
        source.close()
    assert list(victim.iterdir()) == [], "nothing moved through the link"
    kept = watched / "inspected" / name if sub == "skipped" else watched / name  # not skipped: inspected, and moved there
    assert kept.exists() and any("symlink" in note for note in notes), notes


# ---------------------------------------------------------------- the live tap's folder


@pytest.mark.parametrize("target", ["model", "config", "once", "watch", "archive"])
@pytest.mark.parametrize("relation", ["is", "inside", "parent", "link to it", "sibling"])
def test_a_live_tap_folder_overlapping_what_the_station_reads_or_archives_is_refused(tmp_path, target, relation):
    """The live tap deletes its older frames and, at stop, every file of its names: never in a folder of anything else's."""
    import cv2
    import numpy as np

    model, parts, archive, config = tmp_path / "state/model", tmp_path / "state/parts", tmp_path / "state/rejects", tmp_path / "etc/inspectd.toml"
    for folder in (model, parts, archive, config.parent):
        folder.mkdir(parents=True)
    cv2.imwrite(str(parts / "part.png"), np.zeros((8, 8, 3), np.uint8))  # a replay folder with nothing to replay is refused first
    thing = {"model": model, "config": config, "archive": archive}.get(target, parts)
    live = {"is": thing, "inside": thing / "live", "parent": thing.parent, "sibling": thing.parent / f"{thing.name}-live",
            "link to it": tmp_path / "to-it"}[relation]
    if relation == "link to it":
        live.symlink_to(thing)
    mode = "watch" if target == "watch" else "once"
    config.write_text(f'[model]\npath = "{model}"\n[source]\nkind = "directory"\npath = "{parts}"\nmode = "{mode}"\n'
                      f'[archive]\nenabled = true\npath = "{archive}"\n[live]\npath = "{live}"\n')
    errors = [error for error in read(config)[1] if error.key == "live.path"]
    if relation == "sibling":
        assert errors == [], errors
        return
    assert len(errors) == 1, errors  # one line for the key (state/ holds the model, parts and archive folders: the first said)
    line = str(errors[0])
    assert line.startswith(f"{config}: key live.path: '{live}' ") and "live tap a folder of its own" in line, line


def test_the_live_tap_deletes_only_its_own_names_and_never_writes_through_a_link(tmp_path):
    """Its folder shared anyway (outside the configuration's reach, e.g. a path made a link later): others' files stay."""
    import numpy as np

    from inspectd.daemon.station.outputs.live import LiveConfig, LiveTap, Shown

    folder = tmp_path / "live"
    folder.mkdir()
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"not the tap's")
    others = {"part.jpg": b"a part", "notes.png": b"notes", "backup.tmp": b"x", "00000001.jpeg": b"y", "live.json.bak": b"z"}
    for name, data in others.items():
        (folder / name).write_bytes(data)
    (folder / ".00000001.jpg.tmp").symlink_to(victim)  # where the tap writes its first frame before renaming it
    tap = LiveTap(LiveConfig(path=str(folder), rate_hz=2.0))
    for _ in range(5):
        tap.write(Shown(np.zeros((40, 60, 3), np.uint8), 1.0))
    tap.close()
    assert victim.read_bytes() == b"not the tap's"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == others
