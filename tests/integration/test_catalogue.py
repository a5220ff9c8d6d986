"""A catalogue of broken input, as a hostile user would bring it: configurations, model folders, images.

Each entry must get one clear line (naming the file, and the key or field where there is one),
the right exit status, and no traceback; a bad image is never a verdict and never stops the
others. The counts are printed (`pytest -s tests/integration/test_catalogue.py`) for the closing note.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL, problem_lines
from inspectd.daemon.cli import main
from inspectd.daemon.demo.scene import generate_station_dataset

EX_CONFIG = 78


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    data = generate_station_dataset(tmp_path_factory.mktemp("mugs"), n_train=0, n_test_good=2, n_test_per_size=1)
    return data / "test" / "good"


def one_line(stderr: str) -> str:
    lines = problem_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("inspectd: ") and "Traceback" not in stderr, stderr
    return lines[0]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process: an exception escaping main() is a crash and fails the test."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- configurations

BASE = {
    "model": {"path": "{model}"},
    "source": {"kind": "directory", "path": "{images}", "mode": "once"},
    "trigger": {"kind": "continuous"},
    "journal": {"enabled": False},
    "archive": {"path": "{tmp}/archive", "max_mb": 10.0},
    "gpio": {"chip": "memory", "reject": {"line": "GPIO17", "pulse_ms": 100.0}, "ready": {"line": "GPIO27", "period_ms": 500.0}},
}


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def to_toml(config: dict) -> str:
    lines: list[str] = []

    def table(name: str, values: dict) -> None:
        lines.append(f"[{name}]")
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items() if not isinstance(v, dict))
        for key, sub in nested.items():
            table(f"{name}.{key}", sub)

    for name, values in config.items():
        table(name, values)
    return "\n".join(lines) + "\n"


def variant(path: str, value) -> dict:
    config = json.loads(json.dumps(BASE))
    *parents, leaf = path.split(".")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
    if value is DELETE:
        target.pop(leaf)
    else:
        target[leaf] = value
    return config


DELETE = object()
NAN, INF = float("nan"), float("inf")

# (what is broken, key the message must name, the config); every one must exit 78 in check and run.
CONFIGS = [
    *[(f"{key} = {value!r}", key, variant(key, value)) for key, value in [
        ("model.path", 5), ("model.path", "{tmp}/no-such-model"), ("model.path", "{images}"), ("model.threshold", NAN),
        ("model.threshold", INF), ("model.threshold", -1.0), ("model.threshold", 0.0), ("model.threshold", "14"),
        ("model.precision", "fp16"), ("model.device", 3),
        ("source.kind", "camera"), ("source.kind", 1), ("source.path", "{tmp}/nowhere"), ("source.path", "{model}/inspectd.json"),
        ("source.path", "{tmp}/empty"), ("source.mode", "forever"), ("source.mode", True), ("source.roi", [0, 0, 100000, 50]),
        ("source.roi", [-1, 0, 10, 10]), ("source.roi", [0, 0, 0, 10]), ("source.roi", [0, 0, 10]), ("source.roi", "0,0,10,10"),
        ("source.roi", [0.5, 0, 10, 10]), ("source.retry_max_s", 0.0), ("source.retry_max_s", NAN), ("source.retry_max_s", INF),
        ("source.pth", "x"),
        ("trigger.kind", "edge"), ("trigger.debounce_ms", -1.0), ("trigger.debounce_ms", NAN),
        ("decision.min_defect_area", -1), ("decision.min_defect_area", "10"), ("decision.min_defect_area", 1.5),
        ("decision.pixel_threshold", NAN), ("decision.pixel_threshold", INF), ("decision.pixel_threshold", -5.0),
        ("decision.confirm", [3, 2]), ("decision.confirm", [0, 1]), ("decision.confirm", [1]), ("decision.confirm", [1, 2, 3]),
        ("decision.confirm", [1.5, 2]),
        ("journal.enabled", "yes"), ("journal.log", "some"), ("journal.summary_interval_s", 0.0), ("journal.summary_interval_s", NAN),
        ("journal.summary_interval_s", INF),
        ("archive.max_mb", 0.0), ("archive.max_mb", -1.0), ("archive.max_mb", NAN), ("archive.max_mb", INF), ("archive.max_mb", True),
        ("archive.pass_sample_every", -1), ("archive.path", "/proc/inspectd-archive"),
        ("gpio.chip", "no-such-chip"), ("gpio.chip", 17), ("gpio.reject.pulse_ms", 0.0), ("gpio.reject.pulse_ms", NAN),
        ("gpio.reject.pulse_ms", INF), ("gpio.reject.pulse_ms", -5.0), ("gpio.ready.period_ms", 0.0), ("gpio.ready.period_ms", NAN),
        ("gpio.ready.period_ms", INF), ("gpio.ready.line", "GPIO17"), ("gpio.reject.lien", "GPIO5"),
    ]],
    ("interval_ms = inf", "trigger.interval_ms", variant("trigger", {"kind": "interval", "interval_ms": INF})),
    ("interval_ms = nan", "trigger.interval_ms", variant("trigger", {"kind": "interval", "interval_ms": NAN})),
    ("interval_ms = 0", "trigger.interval_ms", variant("trigger", {"kind": "interval", "interval_ms": 0.0})),
    ("interval_ms = -5", "trigger.interval_ms", variant("trigger", {"kind": "interval", "interval_ms": -5.0})),
    ("gpio trigger without a line", "trigger.line", variant("trigger", {"kind": "gpio", "line": ""})),
    ("gpio trigger on the reject line", "trigger.line", variant("trigger", {"kind": "gpio", "line": "GPIO17"})),
    ("confirm with an interval trigger", "decision.confirm",
     {**variant("decision.confirm", [2, 3]), "trigger": {"kind": "interval", "interval_ms": 100.0}}),
    ("unknown table", "modle", {**BASE, "modle": {"path": "x"}}),
    ("no model table, default path absent", "model.path", variant("model", DELETE)),
    # Values that passed `check` and left the station silently wrong or down, or that `run` alone refused (issue 9).
    *[(f"{key} = {value!r}", key, variant(key, value)) for key, value in [
        ("model.threshold", 1e9), ("model.threshold", 10**400), ("model.threshold", 1e-3), ("decision.pixel_threshold", 1e-6),
        ("decision.min_defect_area", 2**40), ("decision.min_defect_area", 10**9), ("decision.min_defect_area", 480 * 360 + 1),
        ("decision.confirm", [1, 5000]), ("decision.confirm", [1, 2**40]), ("source.roi", [0, 0, 2**40, 10]),
        ("source.max_pixels", 2**40), ("source.max_pixels", 0), ("source.retry_max_s", 1e9), ("source.path", "{images}\n"),
        ("journal.summary_interval_s", 1e9), ("archive.max_mb", 1e12), ("archive.path", "{images}/000.png/archive"),
        ("archive.pass_sample_every", 2**40), ("gpio.reject.pulse_ms", 1e300), ("gpio.ready.period_ms", 86_400_001.0),
        ("gpio.reject.line", 17), ("gpio.chip", "memory\x00"),
    ]],
    ("interval_ms = 1e12", "trigger.interval_ms", variant("trigger", {"kind": "interval", "interval_ms": 1e12})),
    ("debounce_ms = 1e12", "trigger.debounce_ms", variant("trigger", {"kind": "gpio", "line": "GPIO22", "debounce_ms": 1e12})),
    ("confirm [1000, 1001]", "decision.confirm", variant("decision.confirm", [1000, 1001])),
]

# Unusual but valid: `check` and `run` must both accept them.
ACCEPTED = [
    ("interval_ms = a day", variant("trigger", {"kind": "interval", "interval_ms": 86_400_000.0})),
    ("a line name and an offset on the memory chip", variant("gpio.ready.line", "17")),
    ("min_defect_area = the whole frame", variant("decision.min_defect_area", 480 * 360)),
    ("confirm = [1000, 1000]", variant("decision.confirm", [1000, 1000])),
    ("threshold 10x the folder's", variant("model.threshold", 1461.0)),
    ("archive off, its path on /proc", {**BASE, "archive": {"enabled": False, "path": "/proc/inspectd-archive"}}),
    ("no [gpio] table", {key: value for key, value in BASE.items() if key != "gpio"}),
]


def write_config(tmp_path: Path, config: dict, images: Path) -> Path:
    (tmp_path / "empty").mkdir(exist_ok=True)
    text = to_toml(config).replace("{model}", str(DEMO_MODEL)).replace("{images}", str(images)).replace("{tmp}", str(tmp_path))
    path = tmp_path / "inspectd.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("what,key,config", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_broken_config_exits_78_in_check_and_run_with_the_same_line(what, key, config, images, tmp_path, capsys):
    """check and run agree: both 78, with the same one line (one change to a good base: no follow-on error)."""
    path = write_config(tmp_path, config, images)
    lines = []
    for command in (["check"], ["run", "--frames", "1"]):
        code, out, err = cli(capsys, *command, "--config", path)
        assert code == EX_CONFIG, (command, out, err)
        line = one_line(err)
        assert str(path) in line or str(DEMO_MODEL) in line, line
        assert key.split(".")[-1] in line, line
        lines.append(line)
    assert lines[0] == lines[1]
    assert not (tmp_path / "archive").exists(), "check and run created nothing"


@pytest.mark.parametrize("what,config", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_unusual_valid_config_is_accepted_by_check_and_run(what, config, images, tmp_path, capsys):
    path = write_config(tmp_path, config, images)
    for command in (["check"], ["run", "--frames", "1"]):
        code, out, err = cli(capsys, *command, "--config", path)
        assert code == 0 and "inspectd: " not in err, (command, out, err)


@pytest.mark.parametrize("text", ["[model\npath = 1", "\x00\x01\x02", "model = 5", "[source]\nkind = \"directory\"\nkind = \"opencv\"",
                                  "[[source]]\nkind = \"directory\""], ids=["syntax", "binary", "not-a-table", "duplicate-key", "array-of-tables"])
def test_unparseable_config(text, tmp_path, capsys):
    path = tmp_path / "inspectd.toml"
    path.write_text(text)
    printed = []
    for command in ("check", "run"):
        code, _, err = cli(capsys, command, "--config", path)
        lines = err.splitlines()
        assert code == EX_CONFIG and lines and "Traceback" not in err, err
        assert all(line.startswith(f"inspectd: {path}: ") for line in lines), err  # the rest: the defaults this machine cannot honour
        printed.append(lines)
    assert printed[0] == printed[1]


def test_valid_base_config_is_accepted(images, tmp_path, capsys):
    """The catalogue's base is good: every failure above comes from its one change."""
    path = write_config(tmp_path, BASE, images)
    code, out, err = cli(capsys, "check", "--config", path)
    assert code == 0 and "OK" in out, err
    code, _, err = cli(capsys, "run", "--config", path, "--frames", "1")
    assert code == 0, err


def test_config_catalogue_size():
    print(f"\ncatalogue: {len(CONFIGS) + 5} broken configurations, {len(ACCEPTED) + 1} unusual valid ones; check and run agree on each")
    assert len(CONFIGS) >= 50


# ---------------------------------------------------------------- model folders


def edit(folder: Path, change) -> None:
    path = folder / "inspectd.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def resign(folder: Path, name: str) -> None:
    """A consistent folder around a bad file: its sha256 updated, so the content itself is what gets judged."""
    import hashlib

    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    edit(folder, lambda m: m["files"][name].update(sha256=digest))


def setter(path: str, value):
    def change(meta):
        *parents, leaf = path.replace("model.bin", "model/bin").split(".")
        parents, leaf = [p.replace("model/bin", "model.bin") for p in parents], leaf.replace("model/bin", "model.bin")
        target = meta
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return change


FIELDS = [
    ("schema", "other"), ("schema_version", 1), ("schema_version", 3), ("schema_version", "2"), ("schema_version", True),
    ("model", DELETE), ("model.type", "patchcore"), ("input", DELETE), ("input.height", 0), ("input.height", -128),
    ("input.height", 128.0), ("input.height", True), ("input.width", "128"), ("input.layout", "NCHW"), ("input.color_order", "RGB"),
    ("input.dtype", "uint8"), ("preprocess", DELETE), ("preprocess.resize.size", 0), ("preprocess.resize.size", [128]),
    ("preprocess.resize.size", [128, -128]), ("preprocess.resize.antialias", False), ("preprocess.resize.method", "nearest"),
    ("preprocess.center_crop", [64]), ("preprocess.center_crop", [0, 0]), ("preprocess.normalize.in_graph", False),
    ("preprocess.normalize.mean", [0.5, 0.5]), ("preprocess.normalize.std", ["a", 1, 1]), ("outputs", DELETE),
    ("outputs.anomaly_map", "nope"), ("outputs.score", 5), ("threshold", DELETE), ("threshold.value", None),
    ("threshold.value", float("nan")), ("threshold.value", float("inf")), ("threshold.value", 0), ("threshold.value", -1.0),
    ("threshold.value", "12"), ("threshold.value", True), ("threshold.source", "guess"), ("runtime", DELETE),
    ("runtime.inference_precision", "int4"), ("runtime.verified_precisions", ["fp8"]), ("runtime.verified_precisions", "f32"),
    ("runtime.precision_checks", []), ("runtime.precision_checks.f16.status", "maybe"), ("self_test", DELETE),
    ("self_test.frames", []), ("self_test.frames", [1, 2]), ("self_test.max_relative_error", 0),
    ("self_test.max_relative_error", 2.0), ("self_test.max_relative_error", float("nan")), ("self_test.max_relative_error_reduced", -0.1),
    ("files", DELETE), ("files.model.bin", DELETE), ("files.model.bin.sha256", 5),
]


def json_key(value) -> str:
    return "deleted" if value is DELETE else json.dumps(value)


FOLDERS = [(f"{field} = {json_key(value)}", field.replace("model.bin", "model/bin").split(".")[-1].replace("model/bin", "model.bin"),
            setter(field, value)) for field, value in FIELDS]


def break_files(kind: str, folder: Path) -> str:
    """Breaks a file of the folder; returns what the message must name."""
    if kind.startswith("missing "):
        (folder / kind.split()[1]).unlink()
        return kind.split()[1]
    if kind.startswith("empty "):
        (folder / kind.split()[1]).write_bytes(b"")
        return kind.split()[1]
    if kind.startswith("truncated "):
        name = kind.split()[1]
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        return name
    if kind == "garbage xml, resigned":
        (folder / "model.xml").write_text("<net><broken")
        resign(folder, "model.xml")
        return "model.xml"
    if kind == "garbage self-test, resigned":
        (folder / "selftest.npz").write_bytes(b"PK\x03\x04 not a zip")
        resign(folder, "selftest.npz")
        return "selftest.npz"
    if kind == "metadata not JSON":
        (folder / "inspectd.json").write_text("{ nope")
        return "inspectd.json"
    if kind == "metadata a list":
        (folder / "inspectd.json").write_text("[]")
        return "inspectd.json"
    if kind == "metadata binary":
        (folder / "inspectd.json").write_bytes(b"\xff\xfe\x00garbage")
        return "inspectd.json"
    if kind == "input size unlike the graph":
        edit(folder, lambda m: (m["input"].update(height=96, width=96), m["preprocess"]["resize"].update(size=[96, 96])))
        return "96"
    if kind == "weights of another model, resigned":
        data = bytearray((folder / "model.bin").read_bytes())
        data[: len(data) // 2] = bytes(len(data) // 2)
        (folder / "model.bin").write_bytes(bytes(data))
        resign(folder, "model.bin")
        return "model"
    raise AssertionError(kind)


FILE_BREAKS = [*(f"{how} {name}" for how in ("missing", "empty", "truncated") for name in ("model.xml", "model.bin", "selftest.npz")),
               "missing inspectd.json", "empty inspectd.json", "garbage xml, resigned", "garbage self-test, resigned",
               "metadata not JSON", "metadata a list", "metadata binary", "input size unlike the graph", "weights of another model, resigned"]


@pytest.fixture()
def folder(tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, copy)
    return copy


@pytest.fixture(scope="module")
def part(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("part") / "part.png"
    cv2.imwrite(str(path), np.full((120, 160, 3), 128, dtype=np.uint8))
    return path


@pytest.mark.parametrize("what,field,change", FOLDERS, ids=[f[0] for f in FOLDERS])
def test_broken_metadata_is_refused_with_one_line(what, field, change, folder, part, capsys):
    edit(folder, change)
    code, out, err = cli(capsys, "infer", folder, part)
    assert code == 2 and out == "", (out, err)
    line = one_line(err)
    assert "inspectd.json" in line and field in line, line


@pytest.mark.parametrize("kind", FILE_BREAKS)
def test_broken_files_are_refused_with_one_line(kind, folder, part, capsys):
    named = break_files(kind, folder)
    code, out, err = cli(capsys, "infer", folder, part)
    assert code in (2, EX_CONFIG) and out == "", (out, err)
    assert named in one_line(err)


def test_model_folder_catalogue_size():
    print(f"\ncatalogue: {len(FOLDERS) + len(FILE_BREAKS) + 2} broken model folders")
    assert len(FOLDERS) + len(FILE_BREAKS) >= 50


@pytest.mark.parametrize("where", ["no folder", "a file"])
def test_not_a_model_folder(where, tmp_path, part, capsys):
    target = tmp_path / "model"
    if where == "a file":
        target.write_text("x")
    code, _, err = cli(capsys, "infer", target, part)
    assert code == 2 and str(target) in one_line(err)


# ---------------------------------------------------------------- images


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, depth: int = 8, colour: int = 2, rows: int = 4) -> bytes:
    """A PNG whose header declares width x height, with a few rows of real data: a decompression bomb's shape."""
    row = b"\x00" + bytes(width * 3)
    pixels = zlib.compress(row * min(rows, height), 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b""))


def jpeg_header_only(width: int, height: int) -> bytes:
    good = cv2.imencode(".jpg", np.full((16, 16, 3), 100, np.uint8))[1].tobytes()
    at = good.index(b"\xff\xc0")
    return good[: at + 5] + struct.pack(">HH", height, width) + good[at + 9:]


def make_images(folder: Path, good: Path) -> dict[str, str]:
    """name -> kind of the broken image written into folder (good: a real demo PNG to corrupt)."""
    png = good.read_bytes()
    jpg = cv2.imencode(".jpg", cv2.imread(str(good)))[1].tobytes()
    made: dict[str, bytes | None] = {
        "empty.png": b"", "empty.jpg": b"",
        **{f"random{n}.png": os.urandom(n) for n in (1, 7, 100, 5000, 100000)},
        **{f"random{n}.jpg": os.urandom(n) for n in (3, 100, 5000)},
        **{f"png_cut{n}.png": png[:n] for n in (8, 16, 33, 60, 200, 1000)},
        "png_half.png": png[: len(png) // 2], "png_minus1.png": png[:-1],
        **{f"jpg_cut{n}.jpg": jpg[:n] for n in (2, 20, 200, 1000)},
        "jpg_half.jpg": jpg[: len(jpg) // 2],
        "png_bad_crc.png": png[:40] + bytes([png[40] ^ 0xFF]) + png[41:],
        "bomb_60000.png": png_header_only(60000, 60000), "bomb_30000.png": png_header_only(30000, 30000),
        "bomb_wide.png": png_header_only(200000, 40), "bomb_zero.png": png_header_only(0, 10),
        "bomb_jpeg.jpg": jpeg_header_only(65000, 65000), "bomb_jpeg_zero.jpg": jpeg_header_only(0, 0),
        "sixteen_bit.png": cv2.imencode(".png", np.full((32, 32, 3), 40000, np.uint16))[1].tobytes(),
        "sixteen_gray.png": cv2.imencode(".png", np.full((32, 32), 40000, np.uint16))[1].tobytes(),
        "float.tiff": cv2.imencode(".tiff", np.full((32, 32, 3), 0.5, np.float32))[1].tobytes(),
        "gray_alpha.png": cv2.imencode(".png", np.full((32, 32, 4), 9, np.uint8))[1].tobytes()[:80],
        "text.png": b"<svg xmlns='http://www.w3.org/2000/svg'/>", "gif.png": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        "bmp_cut.bmp": cv2.imencode(".bmp", np.zeros((32, 32, 3), np.uint8))[1].tobytes()[:60],
        "webp_cut.webp": cv2.imencode(".webp", np.zeros((32, 32, 3), np.uint8))[1].tobytes()[:30],
        "tiff_cut.tiff": cv2.imencode(".tiff", np.zeros((32, 32, 3), np.uint8))[1].tobytes()[:50],
        "jpg_named.png": jpg[: len(jpg) // 3],
        **{f"random.{suffix}": os.urandom(3000) for suffix in ("bmp", "tiff", "webp", "jpeg")},
        "bomb_tiff.tiff": b"II*\x00\x08\x00\x00\x00\x02\x00" + struct.pack("<HHII", 256, 4, 1, 60000) + struct.pack("<HHII", 257, 4, 1, 60000),
        "bomb_bmp.bmp": b"BM" + bytes(16) + struct.pack("<ii", 60000, -60000) + bytes(30),
        "bomb_webp.webp": b"RIFF\x00\x10\x00\x00WEBPVP8X\x0a\x00\x00\x00" + bytes(4) + (60000).to_bytes(3, "little") * 2,
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    (folder / "a_folder.png").mkdir()
    os.mkfifo(folder / "fifo.png")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "loop_a.png").symlink_to(folder / "loop_b.png")
    (folder / "loop_b.png").symlink_to(folder / "loop_a.png")
    (folder / "self.jpg").symlink_to(folder / "self.jpg")
    return {name: "broken" for name in [*made, "a_folder.png", "fifo.png", "dangling.png", "loop_a.png", "loop_b.png", "self.jpg"]}


def test_broken_images_with_infer_never_crash_or_hang(images, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    broken = make_images(folder, sorted(images.glob("*.png"))[0])
    odd = folder / b"caf\xe9 \n name.png".decode("utf-8", "surrogateescape")
    odd.write_bytes(b"\x89PNG not really")
    paths = sorted(folder.iterdir()) + sorted(images.glob("*.png"))
    result = subprocess.run([sys.executable, "-m", "inspectd.daemon.cli", "infer", str(DEMO_MODEL), *map(os.fsencode, paths), "--json"],
                            capture_output=True, timeout=300)
    stdout, stderr = result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    records = [json.loads(line) for line in stdout.splitlines()]
    assert len(records) == len(paths), "one record per image, none lost"
    errors = [r for r in records if "error" in r]
    verdicts = [r for r in records if "verdict" in r]
    assert len(errors) == len(broken) + 1 and len(verdicts) == len(list(images.glob("*.png")))
    assert all(r["image"] for r in records)
    bad_lines = [line for line in problem_lines(stderr) if line.startswith("inspectd: ")]
    assert len(bad_lines) == len(errors)
    print(f"\ncatalogue: {len(broken) + 1} broken images, {len(errors)} refused with one line each, 0 crashes")
    assert len(broken) + 1 >= 50
