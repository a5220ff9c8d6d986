"""The archive in a burst of rejects (issue 14): 200 consecutive REJECTs of camera frames (1456x1088, the Raspberry Pi
Global Shutter camera's size) at 10 frames a second, on this machine, with the station running.

    python bench/archive_burst.py                   # --rounds 2 --frames 200 --folder /dev/shm

1. Encoders alone. Each way of writing the frame (lossless) and the heatmap picture, on the same camera frames, in
   interleaved rounds: milliseconds to encode a frame (median) and bytes a frame; lossless ones are checked to decode
   to the frame. Candidates the archive cannot use as they are (OpenCV's encoders run to their end and cannot be
   abandoned at a stop) are measured too, to know what they would give.
2. The station. The real loop (capture thread, demo model, decision) judges the frames from memory at 10 frames a
   second (``[trigger] interval``, 100 ms), every one a REJECT; rounds alternate no archive (the baseline) and the
   real archive output with each encoding, in this one process (the machine's other tenants hit them alike). Per
   round: frames judged a second between the first and the last verdict and as a ratio to the baseline's, the
   inference latency (median, p95) and its ratio, frames missed by the archive (refused: no INSPECTD_IMAGE; or named
   and not written), bytes a frame (the frame's file and the heatmap picture), encode ms a frame (frame, heatmap
   picture and its encoding, wall clock in the writer), write ms a frame, the writer's CPU ms a frame, the most frames
   waiting (the backlog's peak), and how long after the last verdict the writer was done.

Frames: the real photographs in ../shared/data (--data; cookie, circuitboard) resized to 1456x1088, with sensor noise added
(--noise, standard deviation in grey levels; a real sensor's noise is what makes lossless frames large), else the demo
scene at that size. The archive writes into --folder (default /dev/shm: a disk that keeps up; give a folder on an SD
card or disk to measure that disk) with a quota large enough for every round, and the folder is deleted at the end.
Give the load (``uptime``) with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "models" / "demo-mug"
DATA = ROOT.parent / "shared" / "data"
CAMERA = (1456, 1088)  # width, height
INTERVAL_MS = 100.0  # 10 frames a second
DEFAULT_QUOTA_MB = 500.0  # archive.max_mb's default: how many rejects of this size it keeps


def camera_frames(count: int, noise: float, data: Path, work: Path) -> tuple[list[np.ndarray], str]:
    paths = sorted(data.glob("*/test/*/*.jpg")) if data.is_dir() else []
    if paths:
        what = f"photographs from {data}"
        chosen = [paths[round(i * (len(paths) - 1) / max(count - 1, 1))] for i in range(count)]
        frames = [cv2.resize(cv2.imread(str(p)), CAMERA, interpolation=cv2.INTER_LINEAR) for p in chosen]
    else:
        from inspectd.daemon.demo.scene import generate_station_dataset

        what = "the demo scene"
        data = generate_station_dataset(work / "scene", n_train=0, n_test_good=0, n_test_per_size=max(count // 3, 1),
                                        width=CAMERA[0], height=CAMERA[1])
        frames = [cv2.imread(str(p)) for p in sorted((data / "test").glob("*/*.png"))][:count]
    rng = np.random.default_rng(0)
    if noise:
        frames = [np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8) for f in frames]
    return frames, f"{len(frames)} frames {CAMERA[0]}x{CAMERA[1]}: {what}, noise {noise:g}"


# ---------------------------------------------------------------- 1. encoders alone


def encoders() -> dict:
    """name -> (encode(frame) -> bytes, lossless, can the archive use it as it is)."""
    from inspectd.daemon.station.outputs.png import SUB, UP, encode_png

    def block_png(level: int, strategy: int = zlib.Z_DEFAULT_STRATEGY, fast: bool = False, row_filter: int = UP):
        return lambda image: b"".join(encode_png(image, fast=fast, level=level, strategy=strategy, row_filter=row_filter))

    def opencv(suffix: str, *parameters: int):
        def encode(image: np.ndarray) -> bytes:
            ok, data = cv2.imencode(suffix, image, list(parameters))
            if not ok:
                raise RuntimeError(f"OpenCV cannot write {suffix} here")
            return data.tobytes()
        return encode

    found = {
        "png blocks, Up, zlib 1 (before)": (block_png(1), True, True),
        "png blocks, Up, zlib 1 RLE": (block_png(1, zlib.Z_RLE), True, True),
        "png blocks, Up, zlib 1 HUFFMAN": (block_png(1, zlib.Z_HUFFMAN_ONLY), True, True),
        "png blocks, Sub, zlib 1": (block_png(1, row_filter=SUB), True, True),
        "png blocks, Sub, zlib 1 RLE": (block_png(1, zlib.Z_RLE, row_filter=SUB), True, True),
        "png blocks, Up, zlib 1 FILTERED": (block_png(1, zlib.Z_FILTERED), True, True),
        "png blocks, stored": (block_png(0, fast=True), True, True),
        "opencv png 1": (opencv(".png", cv2.IMWRITE_PNG_COMPRESSION, 1), True, False),
        "opencv png default": (opencv(".png"), True, False),
        "opencv png 1 RLE": (opencv(".png", cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE), True, False),
        "opencv png 1 HUFFMAN": (opencv(".png", cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                        cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY), True, False),
        "opencv png 1 fast filters": (opencv(".png", cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS),
                                      True, False),
        "opencv tiff none": (opencv(".tiff", cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_NONE), True, False),
        "opencv tiff lzw": (opencv(".tiff", cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_LZW), True, False),
        "opencv ppm": (opencv(".ppm"), True, False),
        "opencv webp lossless": (opencv(".webp", cv2.IMWRITE_WEBP_QUALITY, 101), True, False),
        "opencv jpeg 90 (lossy)": (opencv(".jpg", cv2.IMWRITE_JPEG_QUALITY, 90), False, False),
    }
    if cv2.haveImageWriter(".qoi"):
        found["opencv qoi"] = (opencv(".qoi"), True, False)
    return found


def encode_alone(frames: list[np.ndarray], rounds: int) -> None:
    from inspectd.daemon.station.outputs.archive import heatmap
    from inspectd.daemon.station.verdict import FrameVerdict

    print("\n1. encoders alone, per camera frame (median of every frame of every round; rounds interleave the encoders)")
    candidates = encoders()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    sizes: dict[str, list[int]] = {name: [] for name in candidates}
    exact: dict[str, bool] = {name: True for name in candidates}
    for round_ in range(rounds):
        order = list(candidates) if round_ % 2 == 0 else list(reversed(candidates))
        for name in order:
            encode, lossless, _ = candidates[name]
            for frame in frames:
                started = time.perf_counter()
                data = encode(frame)
                times[name].append(time.perf_counter() - started)
                sizes[name].append(len(data))
                if lossless and round_ == 0:
                    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                    exact[name] &= back is not None and np.array_equal(back, frame)
    base = statistics.median(times["png blocks, Up, zlib 1 (before)"])
    print("| frame encoder | ms a frame | ratio to before | MB a frame | lossless (decodes to the frame) | the archive can abandon it at a stop |")
    print("|---|---|---|---|---|---|")
    for name, (_, lossless, abandonable) in candidates.items():
        ms = statistics.median(times[name])
        print(f"| {name} | {ms * 1000:.1f} | {ms / base:.2f} | {statistics.median(sizes[name]) / 1e6:.2f} | "
              f"{('yes' if exact[name] else 'NO') if lossless else 'no (lossy)'} | {'yes' if abandonable else 'no'} |")

    model = _model()
    verdict = _verdicts(model, frames[:1])[0]
    assert isinstance(verdict, FrameVerdict)
    picture_s, jpeg_s, png_s, jpeg_b, png_b = [], [], [], [], []
    encode_png = candidates["png blocks, Up, zlib 1 (before)"][0]
    for _ in range(max(rounds, 1) * 5):
        started = time.perf_counter()
        picture = heatmap(verdict)
        picture_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        jpeg_b.append(len(cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]))
        jpeg_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        png_b.append(len(encode_png(picture)))
        png_s.append(time.perf_counter() - started)
    print(f"the heatmap picture ({picture.shape[1]}x{picture.shape[0]}: the frame beside its overlay): made in "
          f"{statistics.median(picture_s) * 1000:.1f} ms; as JPEG 90 {statistics.median(jpeg_s) * 1000:.1f} ms, "
          f"{statistics.median(jpeg_b) / 1e6:.2f} MB; as PNG (blocks, zlib 1) {statistics.median(png_s) * 1000:.1f} ms, "
          f"{statistics.median(png_b) / 1e6:.2f} MB")


# ---------------------------------------------------------------- 2. the station


class Verdicts:
    """An output that notes each verdict: when it came, its inference latency, the process's CPU time then."""

    name = "verdicts"

    def __init__(self) -> None:
        self.at: list[float] = []
        self.cpu: list[float] = []
        self.latency_ms: list[float] = []
        self.made: list = []

    def verdict(self, verdict) -> None:
        self.at.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.latency_ms.append(verdict.latency_ms)
        self.made.append(verdict)

    def event(self, kind, message, **fields) -> None:
        pass

    def close(self) -> None:
        pass


def _model():
    from inspectd.daemon.runtime.model import Model

    return Model.load(DEMO_MODEL)


def _verdicts(model, frames: list[np.ndarray]) -> list:
    from inspectd.daemon.station.verdict import FrameVerdict, Verdict

    rule = model.rule()
    return [FrameVerdict(frame=n, source="bench", verdict=Verdict.REJECT, score=(i := model.infer(f, "bench")).score, rule=rule,
                         latency_ms=0.0, model_id=model.model_id, precision=model.precision, defect_area=None, inspection=i, pixels=f)
            for n, f in enumerate(frames, start=1)]


def station_round(model, frames: list[np.ndarray], count: int, encoding, folder: Path) -> dict:
    from inspectd.daemon.station.config import ArchiveConfig, Config, JournalConfig, LiveConfig, ModelConfig
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.outputs.archive import ArchiveOutput
    from inspectd.daemon.station.sources import DirectoryConfig
    from inspectd.daemon.station.sources.memory import MemorySource
    from inspectd.daemon.station.triggers import IntervalConfig

    config = Config(model=ModelConfig(path=str(DEMO_MODEL)), source=DirectoryConfig(path=".", mode="watch"),
                    trigger=IntervalConfig(interval_ms=INTERVAL_MS), journal=JournalConfig(enabled=False),
                    archive=ArchiveConfig(enabled=False), live=LiveConfig(enabled=False))
    seen = Verdicts()
    notices: list = []
    archive = None
    outputs: list = [seen]
    if encoding is not None:
        archive = ArchiveOutput(ArchiveConfig(path=str(folder), max_mb=100_000.0), notices.append, encoding)
        outputs.insert(0, archive)  # before ``seen``, as the station's own archive comes before the journal
    Station(config, frames=count, extra_outputs=outputs, open_source=lambda _: MemorySource(frames, loop=True), model=model).run()
    last = time.perf_counter()
    result = {"fps": (len(seen.at) - 1) / (seen.at[-1] - seen.at[0]), "rejects": sum(v.rejected for v in seen.made),
              "latency_p50": float(np.percentile(seen.latency_ms, 50)), "latency_p95": float(np.percentile(seen.latency_ms, 95)),
              "cpu_ms": (seen.cpu[-1] - seen.cpu[0]) / (len(seen.cpu) - 1) * 1000}
    if archive is not None:
        with archive.lock:
            archive.lock.wait_for(lambda: not archive.pending and archive.current is None, timeout=600)
        result["done_after_s"] = time.perf_counter() - last
        archive.close()
        stats = archive.stats
        unwritten = {int(f) for n in notices for f in str(n.fields.get("unwritten", "")).split(", ") if f}
        named = [v for v in seen.made if v.archived is not None]
        missing = [v.frame for v in named if v.frame in unwritten or not v.archived.is_file()]
        result |= {"missed": sum(v.rejected for v in seen.made) - len(named) + len(missing), "faults": len(notices),
                   "bytes": stats.bytes / max(stats.frames, 1), "encode_ms": stats.encode_s / max(stats.frames, 1) * 1000,
                   "write_ms": stats.write_s / max(stats.frames, 1) * 1000, "writer_cpu_ms": stats.cpu_s / max(stats.frames, 1) * 1000,
                   "most_waiting": stats.most_waiting}
        shutil.rmtree(folder, ignore_errors=True)
    return result


def station_rounds(frames: list[np.ndarray], rounds: int, count: int, folder: Path) -> None:
    from inspectd.daemon.station.outputs.encoding import ENCODING, PNG_LEVEL_1, Encoding

    model = _model()
    candidates = [PNG_LEVEL_1, Encoding("png-up-l1-rle + jpeg heatmap", strategy=zlib.Z_RLE),
                  Encoding("png-up-l1-rle + jpeg, stored when one waits", strategy=zlib.Z_RLE, store_behind_s=0.0),
                  Encoding("png stored + jpeg heatmap", level=0)]
    settings = {"no archive": None} | {(e.name + (" (the archive's)" if e == ENCODING else "")): e for e in candidates}
    print(f"\n2. the station at {1000 / INTERVAL_MS:g} frames/s, {count} consecutive REJECTs per round, archive in {folder} "
          f"({rounds} rounds, interleaved; {os.cpu_count()} CPUs; load before: {_load()})")
    station_round(model, frames, 20, None, folder / "warm")  # OpenVINO's first requests, outside the rounds
    measured: dict[str, list[dict]] = {name: [] for name in settings}
    for round_ in range(rounds):
        order = list(settings) if round_ % 2 == 0 else list(reversed(settings))
        for name in order:
            measured[name].append(row := station_round(model, frames, count, settings[name], folder / f"archive-{round_}"))
            tail = "" if settings[name] is None else (
                f", missed {row['missed']}, {row['bytes'] / 1e6:.2f} MB, encode {row['encode_ms']:.0f} ms, write {row['write_ms']:.0f} ms, "
                f"writer CPU {row['writer_cpu_ms']:.0f} ms a frame, most waiting {row['most_waiting']}, done {row['done_after_s']:.1f} s after")
            print(f"  round {round_ + 1}: {name}: {row['fps']:.2f} frames/s, {row['rejects']} rejects, latency p50 {row['latency_p50']:.1f} "
                  f"ms{tail} (load {_load()})", flush=True)
    base = measured["no archive"]
    fps0, p50_0, p95_0 = (statistics.median(r[k] for r in base) for k in ("fps", "latency_p50", "latency_p95"))
    print("\n| archive | frames/s | ratio to no archive | latency p50 / p95 ms | ratio (p50) | frames missed (all rounds) | MB a frame "
          "(frame + heatmap) | encode ms a frame | write ms a frame | writer CPU ms a frame | most frames waiting | rejects the default "
          f"{DEFAULT_QUOTA_MB:g} MB quota holds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in measured.items():
        fps, p50, p95 = (statistics.median(r[k] for r in rows) for k in ("fps", "latency_p50", "latency_p95"))
        line = f"| {name} | {fps:.2f} | {fps / fps0:.3f} | {p50:.1f} / {p95:.1f} | {p50 / p50_0:.2f} |"
        if settings[name] is None:
            line += " - | - | - | - | - | - | - |"
        else:
            nbytes, encode, write, cpu = (statistics.median(r[k] for r in rows) for k in ("bytes", "encode_ms", "write_ms", "writer_cpu_ms"))
            line += (f" {sum(r['missed'] for r in rows)} of {sum(r['rejects'] for r in rows)} | {nbytes / 1e6:.2f} | {encode:.0f} | {write:.0f} | "
                     f"{cpu:.0f} | {max(r['most_waiting'] for r in rows)} | {int(DEFAULT_QUOTA_MB * 2**20 // nbytes)} |")
        print(line)
    print(f"(medians over {rounds} rounds; load after: {_load()})")


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=200, help="consecutive rejects per station round")
    parser.add_argument("--distinct", type=int, default=20, help="distinct camera frames, replayed in a loop")
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise added, standard deviation in grey levels")
    parser.add_argument("--data", type=Path, default=DATA, help=f"MVTec-layout folders of photographs (default {DATA})")
    parser.add_argument("--folder", default="/dev/shm", help="where the archive writes (a folder is made in it and deleted)")
    parser.add_argument("--skip-encoders", action="store_true")
    parser.add_argument("--skip-station", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(dir=args.folder, prefix="inspectd-archive-burst-") as work:
        frames, what = camera_frames(args.distinct, args.noise, args.data, Path(work))
        print(f"archive burst: {what}; OpenCV {cv2.__version__}, zlib {zlib.ZLIB_RUNTIME_VERSION}; load {_load()}")
        if not args.skip_encoders:
            encode_alone(frames, args.rounds)
        if not args.skip_station:
            station_rounds(frames, args.rounds, args.frames, Path(work))


if __name__ == "__main__":
    main()
