"""Issue 17, class 3: no input takes more memory than the limit says.

Memory bombs of every format OpenCV's decoders accept (and some it does not), configuration files and model
metadata that are FIFOs, devices, huge or nested 100,000 deep: each refused in one line, before it is decoded or
read, by a process under the unit's MemoryMax (1.5 GB, set here as RLIMIT_AS on the child process, which fails any
allocation past it instead of letting it happen).

A refusal must come from the header (the decoder never ran: an allocation the limit refused would also end in an
error, so the message is what tells them apart) and the child's peak memory must stay far below a decoded bomb.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_MODEL, problem_lines

LIMIT = 1536 * 2**20  # the unit's MemoryMax
HEADER_REFUSALS = ("declares ", "not a readable image: ", "-bit image", " channels;")  # read_image's refusals before decoding
W = H = 60000


def limited(*argv: object) -> list[str]:
    """``argv`` under RLIMIT_AS = the unit's MemoryMax (prlimit sets it and execs; no preexec_fn in a fork of this
    multi-threaded test process)."""
    return ["prlimit", f"--as={LIMIT}", *map(str, argv)]


def peak_resident_mb() -> float:
    """This program's peak resident memory (VmHWM, of its own address space). Not getrusage's ru_maxrss: that survives
    fork and exec, so it held the pytest process's peak (589 MB once an earlier test had loaded torch there)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, depth: int = 8, colour: int = 2, before_pixels: bytes = b"") -> bytes:
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\x00" + bytes(min(width, 64) * channels * depth // 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)) + before_pixels
            + chunk(b"IDAT", zlib.compress(row * 4)) + chunk(b"IEND", b""))


def jpeg(width: int, height: int, progressive: bool = False, components: int | None = None, precision: int = 8) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 100, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1])
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 4: sof + 9] = struct.pack(">BHH", precision, height, width)
    if components is not None:
        data[sof + 9] = components
    return bytes(data)


def tiff(width: int, height: int, samples: int = 3, bits: int = 8, tile: int | None = None) -> bytes:
    """A little-endian TIFF with one directory; ``tile``: tiled, each tile ``tile`` x ``tile``."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, 2 if samples >= 3 else 1),
               (277, 3, 1, samples)]
    entries += [(322, 4, 1, tile), (323, 4, 1, tile), (324, 4, 1, 200), (325, 4, 1, 64)] if tile else \
        [(273, 4, 1, 200), (278, 4, 1, height), (279, 4, 1, 64)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in sorted(entries)) + b"\0\0\0\0"
    return (b"II*\x00" + struct.pack("<I", 8) + ifd).ljust(200, b"\0") + bytes(64)


def bigtiff(width: int, height: int) -> bytes:
    entries = [(256, 16, 1, width), (257, 16, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 16, 1, 300),
               (277, 3, 1, 1), (278, 16, 1, height), (279, 16, 1, 64)]
    ifd = struct.pack("<Q", len(entries)) + b"".join(struct.pack("<HHQQ", *entry) for entry in entries) + bytes(8)
    return (b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd).ljust(300, b"\0") + bytes(64)


def webp(width: int, height: int, animated: bool = False) -> bytes:
    flags = 0x02 if animated else 0
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    inner = cv2.imencode(".webp", np.zeros((16, 16, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()[12:]
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def j2k(width: int, height: int) -> bytes:
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, width, height, 0, 0, width, height, 0, 0, 3) + b"\x07\x01\x01" * 3
    cod = b"\xff\x52\x00\x0c\x00\x00\x00\x01\x00\x05\x04\x04\x00\x01"
    qcd = b"\xff\x5c\x00\x04\x40\x00"
    return b"\xff\x4f\xff\x51" + siz + cod + qcd + b"\xff\x90\x00\x0a\x00\x00\x00\x00\x00\x0e\x00\x01\xff\x93" + bytes(16) + b"\xff\xd9"


def avif(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".avif", np.zeros((16, 16, 3), np.uint8))[1])
    at = data.index(b"ispe")
    data[at + 8: at + 16] = struct.pack(">II", width, height)
    return bytes(data)


def bombs() -> dict[str, bytes]:
    """name -> bytes: a file of every format OpenCV decodes, declaring more than the limit (or the station) allows."""
    apng = png(64, 64, before_pixels=chunk(b"acTL", struct.pack(">II", 2, 0)) +
               chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, W, H, 0, 0, 1, 10, 0, 0)))
    return {
        "png.png": png(W, H), "png-over-limit.png": png(7000, 7000), "png-16bit.png": png(6000, 6000, depth=16, colour=6),
        "apng-huge-frame.png": apng, "gif-named.png": b"GIF89a" + struct.pack("<HH", 32000, 32000) + b"\x80\x00\x00" + bytes(6)
        + b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", 32000, 32000) + b"\x00\x02\x02\x44\x01\x00\x3b",
        "jpeg.jpg": jpeg(65000, 65000), "jpeg-over-limit.jpg": jpeg(7000, 7000), "jpeg-progressive.jpg": jpeg(65000, 65000, True),
        "jpeg-12bit.jpg": jpeg(6000, 6000, precision=12), "jpeg-many-components.jpg": jpeg(8000, 4000, components=200),
        "bmp.bmp": b"BM" + bytes(12) + struct.pack("<IiiHH", 40, W, -H, 1, 24) + bytes(30),
        "bmp-core.bmp": b"BM" + bytes(12) + struct.pack("<IHHHH", 12, 65535, 65535, 1, 24) + bytes(30),
        "webp-canvas.webp": webp(16384, 16384), "webp-animated.webp": webp(12000, 12000, animated=True),
        "tiff.tiff": tiff(W, H), "tiff-over-limit.tiff": tiff(7000, 7000), "tiff-huge-tile.tiff": tiff(64, 64, tile=65536),
        "tiff-many-samples.tiff": tiff(4000, 4000, samples=1000), "tiff-64bit.tiff": tiff(5000, 5000, bits=64),
        "bigtiff.tiff": bigtiff(W, H),
        "pgm.png": f"P5\n{W} {H}\n255\n".encode() + bytes(64), "ppm.ppm": f"P6\n{W} {H}\n255\n".encode() + bytes(64),
        "pbm.png": f"P4\n{W} {H}\n".encode() + bytes(64),
        "pam.png": f"P7\nWIDTH {W}\nHEIGHT {H}\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n".encode() + bytes(64),
        "pfm.png": f"PF\n{W} {H}\n-1.0\n".encode() + bytes(64),
        "hdr.png": f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {H} +X {W}\n".encode() + bytes(64),
        "sunraster.png": struct.pack(">8I", 0x59A66A95, 30000, 30000, 24, 30000 * 30000 * 3, 1, 0, 0) + bytes(64),
        "jpeg2000.png": j2k(W, H), "avif.png": avif(W, H),
        "exr.png": b"\x76\x2f\x31\x01\x02\x00\x00\x00dataWindow\x00box2i\x00\x10\x00\x00\x00" + struct.pack("<iiii", 0, 0, W, H) + bytes(64),
    }


def goods() -> dict[str, bytes]:
    """A real small frame in each format read: still decoded under the limit."""
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return {f"good{suffix}": cv2.imencode(suffix, frame)[1].tobytes() for suffix in (".png", ".jpg", ".bmp", ".tiff", ".webp")}


def child(folder: str) -> None:
    """In the limited process: read_image on each file; what happened to each, and the peak memory, as JSON."""
    from inspectd.daemon.errors import InspectdError
    from inspectd.daemon.runtime.images import read_image

    seen = {}
    for path in sorted(Path(folder).iterdir()):
        try:
            seen[path.name] = ["decoded", list(read_image(path).shape)]
        except InspectdError as exc:
            seen[path.name] = ["refused", str(exc)]
        except BaseException as exc:  # noqa: BLE001 - what the test must not see
            seen[path.name] = ["crashed", f"{type(exc).__name__}: {exc}"]
    print(json.dumps({"seen": seen, "peak_mb": peak_resident_mb()}))


def test_memory_bombs_of_every_format_are_refused_from_their_header_under_the_units_limit(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    made = {**bombs(), **goods()}
    for name, data in made.items():
        (folder / name).write_bytes(data)
    tests = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(limited(sys.executable, __file__, folder), capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])))
    assert done.returncode == 0, f"the limited process died: {done.returncode}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    seen = report["seen"]
    behaved = []
    for name in bombs():
        outcome, detail = seen[name]
        if outcome == "refused" and any(reason in detail for reason in HEADER_REFUSALS) and "\n" not in detail:
            behaved.append(name)
    for name in goods():
        assert seen[name] == ["decoded", [48, 64, 3]], (name, seen[name])
    print(f"\nmemory: {len(behaved)} of {len(bombs())} bombs refused from their header; peak {report['peak_mb']:.0f} MB under "
          f"RLIMIT_AS {LIMIT / 2**30:.1f} GB; {len(goods())} good frames decoded")
    assert behaved == list(bombs()), {name: seen[name] for name in bombs() if name not in behaved}
    assert report["peak_mb"] < 400, "nothing the size of a bomb was allocated"


# ---------------------------------------------------------------- files read whole: configuration and metadata


def cli_limited(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(limited(sys.executable, "-m", "inspectd.daemon.cli", *args), capture_output=True, text=True, timeout=timeout)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("what", ["/dev/zero", "a FIFO", "a folder", "a 50 MB file", "nested 100,000 deep", "/dev/urandom"])
def test_a_configuration_file_that_is_not_one_is_refused_before_it_is_read(tmp_path, what):
    path = {"/dev/zero": Path("/dev/zero"), "/dev/urandom": Path("/dev/urandom")}.get(what, tmp_path / "inspectd.toml")
    if what == "a FIFO":
        os.mkfifo(path)
    elif what == "a folder":
        path.mkdir()
    elif what == "a 50 MB file":
        path.write_bytes(b"# comment\n" * 5_000_000)
    elif what.startswith("nested"):
        path.write_text("a = " + nested(100_000) + "\n")
    for command in ("check", "run"):
        done = cli_limited(command, "--config", path, timeout=60)
        assert done.returncode == 78 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (command, done.stderr[-2000:])
        assert done.stderr.startswith(f"inspectd: {path}: "), done.stderr


@pytest.mark.parametrize("what", ["a symlink to /dev/zero", "a FIFO", "a 100 MB file", "nested 100,000 deep", "a folder"])
def test_model_metadata_that_is_not_json_of_a_model_is_refused_in_one_line(tmp_path, what):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.xml", "model.bin", "selftest.npz"):
        os.symlink(DEMO_MODEL / name, folder / name)
    metadata = folder / "inspectd.json"
    if what == "a symlink to /dev/zero":
        metadata.symlink_to("/dev/zero")
    elif what == "a FIFO":
        os.mkfifo(metadata)
    elif what == "a 100 MB file":
        metadata.write_bytes(b" " * 100_000_000 + (DEMO_MODEL / "inspectd.json").read_bytes())
    elif what.startswith("nested"):
        metadata.write_text(nested(100_000))
    else:
        metadata.mkdir()
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), np.full((60, 80, 3), 100, np.uint8))
    done = cli_limited("infer", folder, image, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.startswith(f"inspectd: {metadata}: "), done.stderr


def test_a_self_test_declaring_a_huge_array_is_refused_before_it_is_allocated(tmp_path):
    """selftest.npz's arrays are allocated as their headers declare: each header is judged before."""
    import hashlib
    import io
    import zipfile

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.xml", "model.bin"):
        os.symlink(DEMO_MODEL / name, folder / name)
    def npy(shape: tuple[int, ...]) -> bytes:  # a header declaring ``shape``, and a few bytes of data
        header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
        header += b" " * (-(11 + len(header)) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(64)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, shape in (("inputs", (9000, 9000, 9, 3)), ("reference_scores", (1,)), ("reference_maps", (1, 16, 16))):
            archive.writestr(f"{name}.npy", npy(shape))
    data = buffer.getvalue()
    (folder / "selftest.npz").write_bytes(data)
    meta = json.loads((DEMO_MODEL / "inspectd.json").read_text())
    meta["files"]["selftest.npz"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "inspectd.json").write_text(json.dumps(meta))
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), np.full((60, 80, 3), 100, np.uint8))
    done = cli_limited("infer", folder, image, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "selftest.npz" in done.stderr and "'inputs' is float32 [9000, 9000, 9, 3]" in done.stderr, done.stderr

    frames = 100_000  # inspectd.json names as many frames, and the arrays' headers agree: 18 GB of inputs, in a few bytes
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, shape in (("inputs", (frames, 128, 128, 3)), ("reference_scores", (frames,)), ("reference_maps", (frames, 16, 16))):
            archive.writestr(f"{name}.npy", npy(shape))
    data = buffer.getvalue()
    (folder / "selftest.npz").write_bytes(data)
    meta["files"]["selftest.npz"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    meta["self_test"]["frames"] = [f"{index}.png" for index in range(frames)]
    (folder / "inspectd.json").write_text(json.dumps(meta))
    done = cli_limited("infer", folder, image, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "selftest.npz" in done.stderr and "'inputs' needs 18750.0 MB" in done.stderr, done.stderr


if __name__ == "__main__":  # the limited child process
    child(sys.argv[1])


@pytest.mark.parametrize("bomb", ["gif-named.png", "png.png", "pgm.png", "sunraster.png"])
def test_a_ground_truth_mask_that_is_a_bomb_is_refused_from_its_header(tmp_path, bomb):
    """evaluate reads the masks too (it read them with cv2.imread, unbounded: the 37-byte GIF took 1 GB)."""
    data = tmp_path / "data"
    for kind, value in (("test/good", 100), ("test/stain", 200)):
        (data / kind).mkdir(parents=True)
        cv2.imwrite(str(data / kind / "000.png"), np.full((60, 80, 3), value, np.uint8))
    (data / "ground_truth/stain").mkdir(parents=True)
    (data / "ground_truth/stain/000_mask.png").write_bytes(bombs()[bomb])
    done = cli_limited("evaluate", DEMO_MODEL, data, "--no-config")
    lines = [line for line in problem_lines(done.stderr) if line.startswith("inspectd: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"inspectd: {data / 'ground_truth/stain/000_mask.png'}: ") and any(
        refusal in lines[0] for refusal in HEADER_REFUSALS), lines[0]
