"""The GPIO layer: reject pulse, ready heartbeat and part-present trigger over MemoryGpio,
plus the libgpiod backend's errors and, where the kernel has gpio-sim, a simulated chip.

Timing checks here are functional (did the pulse end, roughly when?), with generous
tolerances; the latency figures are measured in bench/, never asserted here.
"""

from __future__ import annotations

import doctest
import gzip
import importlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from inspectd.daemon.errors import GpioError
from inspectd.daemon.gpio import GpioBackend, InputLine, OutputLine, open_backend
from inspectd.daemon.gpio.heartbeat import Heartbeat
from inspectd.daemon.gpio.memory import MemoryGpio
from inspectd.daemon.gpio.reject import RejectPulse
from inspectd.daemon.gpio.sensor import PartSensor
from inspectd.daemon.station.outputs import EventKind
from inspectd.daemon.station.outputs.reject import RejectLineConfig, RejectOutput
from inspectd.daemon.station.triggers.gpio import GpioTrigger
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.station.verdict import FrameVerdict, Verdict

SLACK_S = 0.150  # how late a timer thread may be on a loaded test machine


def wait_for(condition, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def pulses(history: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """(start, width) of each active period in an output's history."""
    found, start = [], None
    for t, active in history:
        if active and start is None:
            start = t
        elif not active and start is not None:
            found.append((start, t - start))
            start = None
    return found


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture
def gpio():
    backend = MemoryGpio()
    yield backend
    backend.close()


# The interface and the memory backend.


@pytest.mark.parametrize("module", ["gpio", "gpio.memory", "gpio.libgpiod", "gpio.heartbeat", "gpio.reject", "gpio.sensor",
                                    "station.outputs.reject"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"inspectd.daemon.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_memory_backend_implements_the_interface(gpio):
    assert isinstance(open_backend("memory"), MemoryGpio)
    assert isinstance(gpio, GpioBackend)
    assert isinstance(gpio.output("GPIO17", consumer="t"), OutputLine)
    assert isinstance(gpio.input("GPIO27"), InputLine)


def test_output_starts_inactive_and_close_leaves_it_inactive(gpio):
    line = gpio.output("GPIO17", active_low=False, consumer="t")
    assert gpio.level("GPIO17") is False
    line.set(True)
    assert gpio.level("GPIO17") is True
    line.close()
    line.close()  # idempotent
    assert [active for _, active in gpio.history("GPIO17")] == [False, True, False]
    with pytest.raises(RuntimeError):
        line.set(True)
    gpio.output("GPIO17", consumer="again").close()  # released: can be requested again


def test_active_low_is_applied_at_the_physical_level(gpio):
    line = gpio.output("GPIO17", active_low=True, consumer="t")
    assert (gpio.level("GPIO17"), gpio.physical("GPIO17")) == (False, True)  # inactive = high
    line.set(True)
    assert (gpio.level("GPIO17"), gpio.physical("GPIO17")) == (True, False)
    line.close()
    assert [high for _, high in gpio.history("GPIO17", physical=True)] == [True, False, True]


def test_a_line_is_held_by_one_request_and_errors_name_the_key(gpio):
    gpio.output("GPIO17", consumer="inspectd-reject")
    with pytest.raises(GpioError) as excinfo:
        gpio.output(" GPIO17", consumer="inspectd-ready", key="gpio.ready.line")
    message = one_line_error(excinfo)
    assert message.startswith("key gpio.ready.line: line 'GPIO17' on memory is in use by 'inspectd-reject'; ")
    gpio.output(17, consumer="t")
    with pytest.raises(GpioError, match=r"^key gpio\.reject\.line: .*in use"):
        gpio.output("17", consumer="t", key="gpio.reject.line")  # digits are the offset
    with pytest.raises(GpioError, match=r"^key trigger\.bias: 'pullup' is not a bias; use one of"):
        gpio.input("GPIO27", bias="pullup", key="trigger.line")
    with pytest.raises(GpioError, match=r"^key gpio\.reject\.line: offset -1 is negative; "):
        gpio.output(-1, key="gpio.reject.line")


def test_input_bias_and_edges_only_after_request(gpio):
    gpio.drive("GPIO5", True)  # before the request: a level, not a queued edge
    early = gpio.input("GPIO5")
    assert early.wait_edge(0.0) is None and gpio.level("GPIO5") is True
    assert gpio.input("GPIO6", bias="pull-up").wait_edge(0) is None
    assert gpio.physical("GPIO6") is True
    gpio.output("GPIO7", consumer="t")
    with pytest.raises(ValueError):
        gpio.drive("GPIO7", True)  # our own output: nothing else may drive it


def test_input_active_low_edges_are_edges_to_active(gpio):
    sensor = gpio.input("GPIO27", active_low=True, bias="pull-up")
    assert gpio.level("GPIO27") is False  # pulled high = inactive
    gpio.drive("GPIO27", False)
    assert sensor.wait_edge(0) is None
    gpio.drive("GPIO27", True)
    assert gpio.physical("GPIO27") is False and sensor.wait_edge(0) is not None


def test_wait_edge_from_another_thread(gpio):
    sensor = gpio.input("GPIO27", bias="pull-down")
    got: list[float | None] = []
    waiter = threading.Thread(target=lambda: got.append(sensor.wait_edge(10.0)))
    waiter.start()
    time.sleep(0.05)
    before = time.monotonic()
    gpio.drive("GPIO27", True)
    after = time.monotonic()
    waiter.join(5)
    assert not waiter.is_alive()
    assert got[0] is not None and before <= got[0] <= after


def test_close_wakes_a_waiting_thread(gpio):
    sensor = gpio.input("GPIO27")
    got: list[float | None] = []
    waiter = threading.Thread(target=lambda: got.append(sensor.wait_edge(30.0)))
    waiter.start()
    time.sleep(0.05)
    sensor.close()
    waiter.join(5)
    assert not waiter.is_alive() and got == [None]


def test_backend_close_releases_every_line_inactive(gpio):
    reject = gpio.output("GPIO17", consumer="a")
    ready = gpio.output("GPIO22", active_low=True, consumer="b")
    reject.set(True)
    ready.set(True)
    gpio.close()
    assert gpio.level("GPIO17") is False and gpio.level("GPIO22") is False and gpio.physical("GPIO22") is True


# The reject pulse.


def test_reject_pulse_width(gpio):
    reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=50)
    reject.pulse()
    assert gpio.level("GPIO17") is True  # at once, not from the timer thread: pulse() did not wait for the end
    wait_for(lambda: not gpio.level("GPIO17"))
    [(start, width)] = pulses(gpio.history("GPIO17"))
    assert 0.050 <= width <= 0.050 + SLACK_S
    reject.close()


def test_overlapping_pulses_extend_one_pulse(gpio):
    reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=100)
    reject.pulse()
    for _ in range(3):
        time.sleep(0.03)
        last = time.monotonic()
        reject.pulse()
    wait_for(lambda: not gpio.level("GPIO17"))
    [(start, width)] = pulses(gpio.history("GPIO17"))  # one pulse, no glitch
    assert start + width >= last + 0.100  # ends a full width after the newest pulse()
    assert width <= 0.100 + 3 * 0.03 + SLACK_S
    reject.close()


def test_separate_pulses(gpio):
    reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=20)
    for _ in range(3):
        reject.pulse()
        wait_for(lambda: not gpio.level("GPIO17"))
    assert len(pulses(gpio.history("GPIO17"))) == 3
    reject.close()


def test_close_lets_the_pulse_run_its_full_width(gpio):
    """A stop or a reload that reopens the lines never shortens a reject pulse the PLC must see."""
    reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=200)
    reject.pulse()
    reject.close()
    reject.close()
    assert gpio.level("GPIO17") is False
    assert not reject._timer.is_alive()
    [(start, width)] = pulses(gpio.history("GPIO17"))
    assert width >= 0.200
    reject.pulse()  # after close: ignored
    assert [active for _, active in gpio.history("GPIO17")] == [False, True, False]
    gpio.output("GPIO17", consumer="again")  # released


def test_reject_pulse_is_thread_safe(gpio):
    reject = RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=30)

    def hammer():
        for _ in range(200):
            reject.pulse()

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wait_for(lambda: not gpio.level("GPIO17"))
    found = pulses(gpio.history("GPIO17"))
    assert found and all(width >= 0.030 for _, width in found)  # no glitch, no cut-short pulse
    reject.close()


@pytest.mark.parametrize("width_ms", [0, -5, float("nan"), float("inf")])
def test_bad_pulse_width_is_refused(gpio, width_ms):
    with pytest.raises(ValueError, match="width_ms"):
        RejectPulse(gpio.output("GPIO17", consumer="t"), width_ms=width_ms)


# The station's reject output over the pulse.


def verdict(kind: Verdict, frame: int = 1) -> FrameVerdict:
    return FrameVerdict(
        frame=frame, source="test", verdict=kind, score=1.0, rule=Rule(0.5), latency_ms=1.0,
        model_id="0" * 64, precision="f32", defect_area=None, inspection=None, pixels=np.zeros((1, 1, 3), np.uint8),
    )


def test_reject_output_pulses_on_reject_only(gpio):
    output = RejectLineConfig(line="GPIO17", active_low=True, pulse_ms=20).open(gpio)
    for frame in range(50):
        output.verdict(verdict(Verdict.PASS, frame))
    output.event(EventKind.SUMMARY, "50 frames")
    assert len(gpio.history("GPIO17")) == 1  # the request only: PASS and events never touch the line
    output.verdict(verdict(Verdict.REJECT, 51))
    assert gpio.level("GPIO17") is True
    output.close()
    output.close()
    assert gpio.level("GPIO17") is False


def test_a_fault_after_a_reject_keeps_its_pulse(gpio):
    output = RejectOutput(RejectPulse(gpio.output("GPIO17", consumer="inspectd-reject"), width_ms=150))
    output.verdict(verdict(Verdict.REJECT))
    output.event(EventKind.FAULT, "camera gone", source="picamera2")
    assert gpio.level("GPIO17") is True
    output.close()
    [(start, width)] = pulses(gpio.history("GPIO17"))
    assert width >= 0.150


# The ready heartbeat.


def test_a_heartbeat_on_a_failing_line_fails_on_every_tick_until_a_write_works(gpio):
    """A tick that skipped the write (not due yet) must not pass for a working line: the station would record the
    line working again, then failing again, every period (found under load by test_fault_boundary)."""
    line = gpio.output("GPIO22", consumer="inspectd-ready")
    beat = Heartbeat(line, period_ms=500)
    line.close()  # the chip went away: every write raises
    for now in (0.0, 0.01, 0.02, 0.3):
        with pytest.raises(RuntimeError):
            beat.tick(now)


def test_heartbeat_toggles_on_ticks(gpio):
    beat = Heartbeat(gpio.output("GPIO22", consumer="inspectd-ready"), period_ms=500)
    for ms in range(0, 2001, 10):
        beat.tick(ms / 1000)
    toggles = [t for t, _ in gpio.history("GPIO22")][1:]
    assert 8 <= len(toggles) <= 9  # every 250 ms over 2 s
    levels = [active for _, active in gpio.history("GPIO22")]
    assert all(a != b for a, b in zip(levels, levels[1:]))


def test_heartbeat_has_no_thread_and_stops_when_ticks_stop(gpio):
    threads = threading.active_count()
    beat = Heartbeat(gpio.output("GPIO22", consumer="inspectd-ready"), period_ms=40)
    assert threading.active_count() == threads

    stop = time.monotonic() + 0.3
    while time.monotonic() < stop:  # a healthy loop
        beat.tick(time.monotonic())
        time.sleep(0.005)
    alive = len(gpio.history("GPIO22"))
    assert alive >= 4
    time.sleep(0.3)  # the loop hangs: nobody ticks
    assert len(gpio.history("GPIO22")) == alive  # no edge: the PLC sees the inspector down


def test_heartbeat_fault_holds_inactive_until_healthy(gpio):
    beat = Heartbeat(gpio.output("GPIO22", active_low=True, consumer="inspectd-ready"), period_ms=100)
    beat.tick(0.0)
    assert gpio.level("GPIO22") is True
    beat.fault()
    assert gpio.level("GPIO22") is False and gpio.physical("GPIO22") is True
    for ms in range(0, 1000, 10):
        beat.tick(1.0 + ms / 1000)
    assert gpio.level("GPIO22") is False
    frozen = len(gpio.history("GPIO22"))
    assert frozen == 3
    beat.healthy()
    beat.tick(2.0)
    assert gpio.level("GPIO22") is True  # resumes at once
    beat.tick(2.06)
    assert gpio.level("GPIO22") is False


def test_heartbeat_close_leaves_it_inactive(gpio):
    beat = Heartbeat(gpio.output("GPIO22", consumer="inspectd-ready"), period_ms=100)
    beat.tick(0.0)
    assert gpio.level("GPIO22") is True
    beat.close()
    beat.close()
    beat.tick(1.0)
    beat.fault()
    assert gpio.level("GPIO22") is False
    gpio.output("GPIO22", consumer="again")  # released


# The part-present trigger.


def test_sensor_debounces_a_bouncy_burst(gpio):
    sensor = PartSensor(gpio.input("GPIO27", bias="pull-down", consumer="inspectd-trigger"), debounce_ms=50)
    for level in (True, False) * 5 + (True,):  # one part: the contact bounces for ~0 ms
        gpio.drive("GPIO27", level)
    first = sensor.wait(1.0)
    assert first is not None and first == sensor.last_edge_s
    assert sensor.wait(0.05) is None  # the bounces were swallowed
    gpio.drive("GPIO27", False)
    time.sleep(0.06)
    gpio.drive("GPIO27", True)  # the next part, after the debounce window
    second = sensor.wait(1.0)
    assert second is not None and second - first >= 0.05
    sensor.close()
    sensor.close()


def test_sensor_timeout_returns_none(gpio):
    sensor = PartSensor(gpio.input("GPIO27"), debounce_ms=10)
    assert sensor.wait(0.1) is None
    assert sensor.wait(0) is None


def test_gpio_trigger_wakes_on_an_edge_driven_from_another_thread(gpio):
    trigger = GpioTrigger(PartSensor(gpio.input("GPIO27"), debounce_ms=10))
    driver = threading.Timer(0.05, gpio.drive, args=("GPIO27", True))
    driver.start()
    assert trigger.wait(10.0) is True
    assert trigger.wait(0) is False
    driver.join()
    trigger.close()
    trigger.close()


@pytest.mark.parametrize("debounce_ms", [-1, float("nan"), float("inf")])
def test_bad_debounce_is_refused(gpio, debounce_ms):
    with pytest.raises(ValueError, match="debounce_ms"):
        PartSensor(gpio.input("GPIO27"), debounce_ms=debounce_ms)


# The libgpiod backend.


def test_missing_gpiod_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod -> ImportError
    with pytest.raises(GpioError) as excinfo:
        open_backend("pinctrl-rp1")
    message = one_line_error(excinfo)
    assert message.startswith("key gpio.chip: ") and "pip install 'gpiod>=2.1'" in message and "apt install python3-libgpiod" in message


def test_unknown_chip_is_a_one_line_error():
    pytest.importorskip("gpiod", reason="gpiod not installed: pip install 'gpiod>=2.1'")
    with pytest.raises(GpioError) as excinfo:
        open_backend("gpiochip-does-not-exist")
    message = one_line_error(excinfo)
    assert message.startswith("key gpio.chip: no GPIO chip 'gpiochip-does-not-exist'")
    with pytest.raises(GpioError, match=r"^key gpio\.chip: /dev/gpiochip-does-not-exist does not exist; "):
        open_backend("/dev/gpiochip-does-not-exist")


def test_list_chips_lists_what_exists():
    pytest.importorskip("gpiod", reason="gpiod not installed: pip install 'gpiod>=2.1'")
    from inspectd.daemon.gpio.libgpiod import list_chips

    chips = list_chips()
    devices = [p for p in Path("/dev").glob("gpiochip*") if not p.is_symlink()]
    assert len(chips) == len(devices)


# The libgpiod backend against the kernel's GPIO simulator, where it can be used.

SIM_ROOT = Path("/sys/kernel/config/gpio-sim")


def kernel_config() -> dict[str, str]:
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{platform.release()}")):
        if path.is_file():
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
            options = {}
            for line in text.splitlines():
                if line.startswith("CONFIG_"):
                    name, _, value = line.partition("=")
                    options[name] = value
                elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                    options[line[2:].split()[0]] = "n"
            return options
    return {}


def gpio_sim_unavailable() -> str | None:
    """None when gpio-sim can be used (loading it and mounting configfs if need be), else why not."""
    if SIM_ROOT.is_dir():
        return None
    if os.geteuid() != 0:
        return "gpio-sim needs root (configfs) and is not set up"
    attempts = []
    if shutil.which("modprobe"):
        loaded = subprocess.run(["modprobe", "gpio-sim"], capture_output=True, text=True)
        if loaded.returncode != 0:
            attempts.append(f"`modprobe gpio-sim` failed: {loaded.stderr.strip()}")
    else:
        attempts.append("no modprobe")
    if not SIM_ROOT.is_dir() and "configfs" in Path("/proc/filesystems").read_text() and Path("/sys/kernel/config").is_dir():
        subprocess.run(["mount", "-t", "configfs", "configfs", "/sys/kernel/config"], capture_output=True)
    if SIM_ROOT.is_dir():
        return None
    options = kernel_config()
    if not options:
        attempts.append("kernel config not readable")
    else:
        needed = ("CONFIG_GPIOLIB", "CONFIG_GPIO_CDEV", "CONFIG_CONFIGFS_FS", "CONFIG_GPIO_SIM", "CONFIG_MODULES")
        missing = [name for name in needed if options.get(name, "n") == "n"]
        if missing:
            attempts.append(f"kernel config lacks {', '.join(missing)}")
    return f"gpio-sim unusable on kernel {platform.release()}: {SIM_ROOT} absent; " + "; ".join(attempts)


@dataclass
class SimChip:
    label: str
    name: str  # gpiochipN
    sysfs: Path  # /sys/devices/platform/gpio-sim.N/gpiochipN

    def value(self, offset: int) -> bool:
        return (self.sysfs / f"sim_gpio{offset}" / "value").read_text().strip() == "1"

    def pull(self, offset: int, high: bool) -> None:
        (self.sysfs / f"sim_gpio{offset}" / "pull").write_text("pull-up" if high else "pull-down")


SIM_LINES = {0: "GPIO17", 1: "GPIO27", 2: "GPIO22"}


@pytest.fixture
def sim_chip():
    reason = gpio_sim_unavailable()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("gpiod", reason="gpiod not installed: pip install 'gpiod>=2.1'")
    device = SIM_ROOT / f"inspectd-test-{os.getpid()}"
    bank = device / "bank0"
    label = f"inspectd-sim-{os.getpid()}"
    device.mkdir()
    bank.mkdir()
    (bank / "num_lines").write_text("8")
    (bank / "label").write_text(label)
    for offset, name in SIM_LINES.items():
        (bank / f"line{offset}").mkdir()
        (bank / f"line{offset}" / "name").write_text(name)
    try:
        (device / "live").write_text("1")
        name = (bank / "chip_name").read_text().strip()
        yield SimChip(label, name, Path("/sys/devices/platform") / (device / "dev_name").read_text().strip() / name)
    finally:
        if (device / "live").read_text().strip() == "1":
            (device / "live").write_text("0")
        for offset in SIM_LINES:
            (bank / f"line{offset}").rmdir()
        bank.rmdir()
        device.rmdir()


def test_gpio_sim_output_by_label_name_and_path(sim_chip):
    for chip in (sim_chip.label, sim_chip.name, f"/dev/{sim_chip.name}"):
        gpio = open_backend(chip)
        reject = gpio.output("GPIO17", active_low=True, consumer="inspectd-reject")
        assert sim_chip.value(0) is True  # inactive, active-low: high
        reject.set(True)
        assert sim_chip.value(0) is False
        gpio.close()
        assert sim_chip.value(0) is True  # released inactive
        gpio.close()  # twice: harmless


def test_gpio_sim_reject_pulse(sim_chip):
    gpio = open_backend(sim_chip.label)
    reject = RejectPulse(gpio.output(2, consumer="inspectd-reject"), width_ms=50)
    reject.pulse()
    assert sim_chip.value(2) is True
    wait_for(lambda: not sim_chip.value(2))
    reject.close()
    gpio.close()


def test_gpio_sim_input_edges_and_trigger(sim_chip):
    gpio = open_backend(sim_chip.label)
    sim_chip.pull(1, high=False)
    sensor = PartSensor(gpio.input("GPIO27", bias="as-is", consumer="inspectd-trigger"), debounce_ms=20)
    before = time.monotonic()
    sim_chip.pull(1, high=True)
    edge = sensor.wait(5.0)
    assert edge is not None and before <= edge <= time.monotonic()  # kernel timestamps are time.monotonic()
    sim_chip.pull(1, high=False)
    assert sensor.wait(0.05) is None  # the falling edge is not a part
    sensor.close()
    gpio.close()


def test_gpio_sim_errors_and_doctor(sim_chip):
    from inspectd.daemon.gpio.libgpiod import list_chips

    gpio = open_backend(sim_chip.label)
    with pytest.raises(GpioError) as excinfo:
        gpio.output("GPIO99", consumer="t", key="gpio.reject.line")
    assert one_line_error(excinfo) == (
        f"key gpio.reject.line: no line 'GPIO99' on {sim_chip.name} ({sim_chip.label}); `inspectd doctor` lists the chips and lines"
    )
    with pytest.raises(GpioError, match=r"^key gpio\.ready\.line: no offset 8 on"):
        gpio.output(8, consumer="t", key="gpio.ready.line")
    gpio.output("GPIO17", consumer="inspectd-reject")
    with pytest.raises(GpioError, match=r"^key gpio\.ready\.line: .*in use by 'inspectd-reject'"):
        gpio.output("GPIO17", consumer="inspectd-ready", key="gpio.ready.line")
    [chip] = [chip for chip in list_chips() if chip.label == sim_chip.label]
    assert chip.name == sim_chip.name and len(chip.lines) == 8
    assert (chip.lines[0].name, chip.lines[0].used, chip.lines[0].consumer) == ("GPIO17", True, "inspectd-reject")
    gpio.close()


def test_gpio_sim_wait_edge_from_another_thread_and_close(sim_chip):
    gpio = open_backend(sim_chip.label)
    sim_chip.pull(1, high=False)
    sensor = gpio.input("GPIO27", bias="as-is")
    got: list[float | None] = []
    waiter = threading.Thread(target=lambda: got.append(sensor.wait_edge(30.0)))
    waiter.start()
    time.sleep(0.05)
    sim_chip.pull(1, high=True)
    waiter.join(5)
    assert got and got[0] is not None
    waiter = threading.Thread(target=lambda: got.append(sensor.wait_edge(30.0)))
    waiter.start()
    time.sleep(0.05)
    sensor.close()
    waiter.join(5)
    assert not waiter.is_alive() and got[1] is None
    gpio.close()
