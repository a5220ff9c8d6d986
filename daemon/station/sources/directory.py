"""``[source] kind = "directory"``: a folder of images, replayed once, in a loop, or watched for new files.

    >>> source = DirectorySource("/srv/parts", mode="watch")   # doctest: +SKIP
    >>> frame = source.read(timeout_s=0.5)                      # doctest: +SKIP

Watch mode takes files that appear after start, oldest first, once they have not changed
for WATCH_SETTLE_S (another system may still be writing them: writing under a temporary
name and renaming into the folder is safest). An unreadable file is reported as a fault for
that file (never a verdict) and the replay goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from inspectd.daemon.errors import ConfigError, InspectdError, SourceError
from inspectd.daemon.runtime.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, list_images, read_image
from inspectd.daemon.station.settings import setting
from inspectd.daemon.station.sources.interface import BadFrame, Frame, Source, SourceConfig, SourceEnded

WATCH_SETTLE_S = 0.2
WATCH_POLL_S = 0.05
MODES = ("once", "loop", "watch")


@dataclass
class DirectoryConfig(SourceConfig):
    kind: ClassVar[str] = "directory"

    path: str = ""  # the folder
    mode: str = setting("once", choices=MODES)

    def check(self) -> None:
        super().check()
        if not self.path:
            raise ConfigError("is required for a directory source", key="path", fix="set it to the folder of images to replay or watch")
        if not Path(self.path).is_dir():
            raise ConfigError(f"'{self.path}' is not a folder", key="path", fix="create it or point to the images")
        if self.mode != "watch" and not list_images(Path(self.path)):
            raise ConfigError(f"'{self.path}' holds no images ({', '.join(IMAGE_SUFFIXES)})", key="path",
                              fix="add some, or use mode = 'watch' for files that arrive later")

    @property
    def frames_on_demand(self) -> bool:
        return self.mode == "watch"

    def sample(self) -> Frame | None:
        if self.mode == "watch":
            return None
        source = self.open()
        try:
            return source.read(0.0)
        except BadFrame:
            return None  # one unreadable file is a fault record at run time, not a configuration error
        finally:
            source.close()

    def open_kind(self) -> Source:
        return DirectorySource(self.path, self.mode, self.max_pixels)


class DirectorySource:
    def __init__(self, path: str | Path, mode: str = "once", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.folder, self.mode, self.max_pixels = Path(path), mode, max_pixels
        if not self.folder.is_dir():
            raise SourceError(f"'{self.folder}' is not a folder", key="source.path", fix="create it or point to the images")
        self.name = f"directory:{self.folder}"
        self.queue: list[Path] = [] if mode == "watch" else list_images(self.folder)
        self.seen: set[str] = {p.name for p in list_images(self.folder)} if mode == "watch" else set()
        if mode != "watch" and not self.queue:
            raise SourceError(f"'{self.folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})", key="source.path",
                              fix="add some, or use mode = 'watch'")
        self.position = 0

    def read(self, timeout_s: float) -> Frame | None:
        path = self._next_path(timeout_s)
        if path is None:
            return None
        try:
            pixels = read_image(path, self.max_pixels)
        except InspectdError as exc:
            raise BadFrame(str(exc)) from None
        return Frame(pixels, path.name, time.monotonic())

    def _next_path(self, timeout_s: float) -> Path | None:
        if self.mode != "watch":
            if self.position == len(self.queue):
                if self.mode == "once":
                    raise SourceEnded(f"replayed all {len(self.queue)} images of {self.folder}")
                self.position = 0
            self.position += 1
            return self.queue[self.position - 1]
        deadline = time.monotonic() + timeout_s
        while True:
            ready = self._settled_new_files()
            if ready:
                self.seen.add(ready[0].name)
                return ready[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(WATCH_POLL_S)

    def _settled_new_files(self) -> list[Path]:
        now = time.time()
        fresh = []
        for path in self.folder.iterdir():
            if path.name in self.seen or path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if now - modified >= WATCH_SETTLE_S:
                fresh.append((modified, path.name, path))
        return [path for _, _, path in sorted(fresh)]

    def close(self) -> None:
        pass
