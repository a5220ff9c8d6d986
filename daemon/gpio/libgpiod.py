"""The libgpiod v2 backend: real GPIO chips through the kernel's character devices.

The chip is given as a name (``gpiochip0``), a path (``/dev/gpiochip0``) or a label
(``pinctrl-rp1``). Use the label on a Raspberry Pi 5: the header chip is gpiochip4 on older
kernels and gpiochip0 on newer ones. ``gpiod`` (PyPI ``gpiod>=2.1``, or Debian's
``python3-libgpiod``) is imported only here, when a chip is opened.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspectd.daemon.errors import GpioError
from inspectd.daemon.gpio import LineInfo, check_bias, holder, line_id

DEV = Path("/dev")
DOCTOR = "`inspectd doctor` lists the chips and lines"
GROUP_FIX = "add the service user to the 'gpio' group (`sudo usermod -aG gpio USER`, then log in again)"


@dataclass
class ChipInfo:
    path: str  # /dev/gpiochipN
    name: str  # gpiochipN
    label: str  # e.g. pinctrl-rp1
    lines: list[LineInfo] = field(default_factory=list)
    error: str | None = None  # why the chip could not be read (lines is then empty)


def import_gpiod(key: str = "gpio.chip") -> Any:
    try:
        import gpiod
    except ImportError:
        raise GpioError(
            "the libgpiod v2 Python bindings are not installed", key=key,
            fix="`pip install 'gpiod>=2.1'` in the service's venv, or `apt install python3-libgpiod` (Raspberry Pi OS Bookworm) "
                "with a --system-site-packages venv",
        ) from None
    if not hasattr(gpiod, "LineSettings"):  # libgpiod v1 bindings (Bullseye) share the module name
        version = getattr(gpiod, "__version__", "1.x")
        raise GpioError(f"the installed 'gpiod' module ({version}) is libgpiod v1; inspectd needs v2", key=key, fix="`pip install 'gpiod>=2.1'`")
    return gpiod


def list_chips() -> list[ChipInfo]:
    """Every GPIO chip on this machine with its lines, for ``inspectd doctor``."""
    gpiod = import_gpiod()
    chips = []
    for path in _chip_paths(gpiod):
        try:
            with gpiod.Chip(str(path)) as chip:
                info = chip.get_info()
                lines = []
                for offset in range(info.num_lines):
                    line = chip.get_line_info(offset)
                    lines.append(LineInfo(offset, line.name or "", line.used, line.consumer or ""))
                chips.append(ChipInfo(str(path), info.name, info.label, lines))
        except PermissionError:
            chips.append(ChipInfo(str(path), path.name, "", error=f"permission denied; {GROUP_FIX}"))
        except OSError as exc:
            chips.append(ChipInfo(str(path), path.name, "", error=exc.strerror or str(exc)))
    return chips


def _chip_paths(gpiod: Any) -> list[Path]:
    """The GPIO character devices, once each (a Pi 5's gpiochip4 may be a symlink to gpiochip0)."""
    found: dict[str, Path] = {}
    candidates = sorted(DEV.glob("gpiochip*"), key=lambda p: (p.is_symlink(), len(p.name), p.name))
    for path in candidates:
        real = os.path.realpath(path)
        if real not in found and gpiod.is_gpiochip_device(str(path)):
            found[real] = path
    return sorted(found.values(), key=lambda p: (len(p.name), p.name))


def resolve_chip(gpiod: Any, chip: str, key: str = "gpio.chip") -> Path:
    """The device path of a chip given by name, path or label."""
    if "/" in chip:
        path = Path(chip)
        if not path.exists():
            raise GpioError(f"{chip} does not exist", key=key, fix=DOCTOR)
        if not gpiod.is_gpiochip_device(chip):
            raise GpioError(f"{chip} is not a GPIO chip device", key=key, fix=DOCTOR)
        return path
    if (DEV / chip).exists() and gpiod.is_gpiochip_device(str(DEV / chip)):
        return DEV / chip
    paths = _chip_paths(gpiod)
    denied = []
    known = []
    for path in paths:
        try:
            with gpiod.Chip(str(path)) as opened:
                info = opened.get_info()
        except PermissionError:
            denied.append(str(path))
            continue
        if info.label == chip:
            return path
        known.append(f"{info.name} ({info.label})")
    if denied:
        raise GpioError(f"no GPIO chip named {chip!r}, and {', '.join(denied)} cannot be read (permission denied)", key=key, fix=GROUP_FIX)
    if not paths:
        raise GpioError(
            f"no GPIO chip {chip!r}: this machine has no GPIO character devices (/dev/gpiochip*), so it is not a Pi or its kernel "
            "lacks GPIO support", key=key, fix='set chip = "memory" for a dry run',
        )
    raise GpioError(f"no GPIO chip {chip!r}", key=key,
                    fix=f"chips here: {', '.join(known)}: use one of these names or labels (a Pi 5's header is \"pinctrl-rp1\")")


class GpiodBackend:
    """Lines of one libgpiod v2 chip.

        >>> gpio = GpiodBackend("pinctrl-rp1")                                      # doctest: +SKIP
        >>> reject = gpio.output("GPIO17", consumer="inspectd-reject", key="gpio.reject.line")  # doctest: +SKIP
        >>> reject.set(True); reject.set(False)                                     # doctest: +SKIP
        >>> gpio.close()           # every output inactive, then released           # doctest: +SKIP

    Lines keep their level after release (libgpiod does not reset them), so outputs are
    driven inactive before they are released.
    """

    def __init__(self, chip: str, *, key: str = "gpio.chip") -> None:
        self._gpiod = gpiod = import_gpiod(key)
        path = resolve_chip(gpiod, chip, key)
        try:
            self._chip = gpiod.Chip(str(path))
        except PermissionError:
            raise GpioError(f"permission denied opening {path}", key=key, fix=GROUP_FIX) from None
        except OSError as exc:
            raise GpioError(f"cannot open {path}: {exc.strerror or exc}", key=key, fix=DOCTOR) from None
        info = self._chip.get_info()
        self.name = f"{info.name} ({info.label})"
        self._num_lines = info.num_lines
        self._lock = threading.Lock()  # gpiod.Chip needs external synchronisation
        self._held: list[_GpiodOutput | _GpiodInput] = []
        self._closed = False

    def output(self, line: str | int, *, active_low: bool = False, consumer: str = "inspectd", key: str | None = None) -> _GpiodOutput:
        gpiod = self._gpiod
        settings = gpiod.LineSettings(
            direction=gpiod.line.Direction.OUTPUT, active_low=active_low, output_value=gpiod.line.Value.INACTIVE
        )
        offset, request = self._request(line, settings, consumer, key)
        handle = _GpiodOutput(gpiod, request, offset)
        self._held.append(handle)
        return handle

    def input(
        self, line: str | int, *, active_low: bool = False, bias: str = "as-is", consumer: str = "inspectd", key: str | None = None
    ) -> _GpiodInput:
        gpiod = self._gpiod
        biases = {
            "disabled": gpiod.line.Bias.DISABLED,
            "pull-up": gpiod.line.Bias.PULL_UP,
            "pull-down": gpiod.line.Bias.PULL_DOWN,
            "as-is": gpiod.line.Bias.AS_IS,
        }
        settings = gpiod.LineSettings(
            direction=gpiod.line.Direction.INPUT,
            edge_detection=gpiod.line.Edge.RISING,  # the kernel counts edges in logical terms: inactive -> active
            bias=biases[check_bias(bias, key)],
            active_low=active_low,
            event_clock=gpiod.line.Clock.MONOTONIC,  # the same clock as time.monotonic()
        )
        offset, request = self._request(line, settings, consumer, key, bias=bias)
        handle = _GpiodInput(gpiod, request)
        self._held.append(handle)
        return handle

    def line_info(self, line: str | int, *, key: str | None = None) -> LineInfo:
        with self._lock:
            offset = self._offset(line, key)
            info = self._chip.get_line_info(offset)
        return LineInfo(offset, info.name or "", info.used, info.consumer or "")

    def close(self) -> None:
        for handle in self._held:
            handle.close()
        self._held.clear()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._chip.close()

    def _offset(self, line: str | int, key: str | None) -> int:
        line = line_id(line, key)
        offset: int | None = line if isinstance(line, int) else None
        if offset is None:
            try:
                offset = self._chip.line_offset_from_id(line)
            except (OSError, ValueError):
                offset = None
        if offset is None or not 0 <= offset < self._num_lines:
            what = f"offset {line}" if isinstance(line, int) else f"line {line!r}"
            raise GpioError(f"no {what} on {self.name}", key=key, fix=DOCTOR)
        return offset

    def _request(self, line: str | int, settings: Any, consumer: str, key: str | None, bias: str = "as-is") -> tuple[int, Any]:
        with self._lock:
            offset = self._offset(line, key)
            try:  # the kernel lets one request hold a line; the consumer carries the PID, to say who holds it
                return offset, self._chip.request_lines(config={offset: settings}, consumer=f"{consumer}:{os.getpid()}"[:31])
            except OSError as exc:
                where = f"line {line!r} (offset {offset}) on {self.name}"
                if exc.errno == errno.EBUSY:
                    raise GpioError(f"{where} is in use by {holder(self._chip.get_line_info(offset).consumer)}", key=key,
                                    fix="stop it (or free the pin in config.txt) or choose another line") from None
                if exc.errno in (errno.EPERM, errno.EACCES):
                    raise GpioError(f"{where}: permission denied", key=key, fix=GROUP_FIX) from None
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL) and bias != "as-is":
                    raise GpioError(f"{where}: the chip refused bias {bias!r} ({exc.strerror})", key=key,
                                    fix='set the bias to "as-is" and fit an external resistor') from None
                raise GpioError(f"{where}: cannot request it: {exc.strerror or exc}", key=key, fix=DOCTOR) from None


class _GpiodOutput:
    def __init__(self, gpiod: Any, request: Any, offset: int) -> None:
        self._values = (gpiod.line.Value.INACTIVE, gpiod.line.Value.ACTIVE)
        self._request, self._offset = request, offset
        self._lock = threading.Lock()  # a LineRequest needs external synchronisation
        self._closed = False

    def set(self, active: bool) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("output line is closed")
            self._request.set_value(self._offset, self._values[bool(active)])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._request.set_value(self._offset, self._values[0])
            finally:
                self._request.release()


class _GpiodInput:
    def __init__(self, gpiod: Any, request: Any) -> None:
        self._rising = gpiod.EdgeEvent.Type.RISING_EDGE
        self._request = request
        self._pending: deque[float] = deque()
        self._waiting = threading.Lock()  # held while a thread waits; close() takes it to release safely
        self._state = threading.Lock()
        self._closed = False
        # close() writes here to wake a wait_edge blocked in select() in another thread.
        self._wake_r, self._wake_w = os.pipe()

    def wait_edge(self, timeout_s: float) -> float | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._waiting:
            while not self._pending:
                remaining = max(0.0, deadline - time.monotonic())
                if self._closed:
                    return None
                ready, _, _ = select.select([self._request.fd, self._wake_r], [], [], remaining)
                if self._closed or self._request.fd not in ready:
                    return None
                for event in self._request.read_edge_events():
                    if event.event_type == self._rising:
                        self._pending.append(event.timestamp_ns / 1e9)
            return self._pending.popleft()

    def close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        with self._waiting:
            self._request.release()
            os.close(self._wake_r)
            os.close(self._wake_w)
