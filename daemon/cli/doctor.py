"""``inspectd doctor``: what this machine offers the station, to fill in the configuration."""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os


def add_to(commands) -> None:
    parser = commands.add_parser("doctor", help="list what this machine offers: GPIO chips and lines, cameras, OpenVINO devices, journal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(report())
    return 0


def report() -> str:
    lines = []
    try:
        import openvino as ov

        core = ov.Core()
        for device in core.available_devices:
            precision = core.get_property(device, "INFERENCE_PRECISION_HINT").get_type_name()
            lines.append(f"openvino {ov.__version__}: device {device}, default inference precision {precision} "
                         f"(model folders ask for their own, usually f32)")
    except Exception as exc:  # doctor reports, it does not fail
        lines.append(f"openvino: not usable ({exc})")
    cameras = sorted(glob.glob("/dev/video*"))
    lines.append(f"cameras: {', '.join(cameras) if cameras else 'no /dev/video* devices'}")
    lines.append("picamera2: " + ("available" if importlib.util.find_spec("picamera2") else
                                  "missing (apt install python3-picamera2; venv with --system-site-packages)"))
    journal = os.path.exists("/run/systemd/journal/socket")
    systemd_python = importlib.util.find_spec("systemd") is not None
    lines.append(f"journald: {'socket present' if journal else 'no socket (records go to stderr)'}; systemd-python "
                 f"{'installed' if systemd_python else 'missing (apt install python3-systemd, or pip install systemd-python)'}")
    try:
        from inspectd.daemon.gpio.libgpiod import list_chips

        chips = list_chips()
        if not chips:
            lines.append("gpio: no /dev/gpiochip* devices")
        for chip in chips:
            named = ", ".join(f"{line.offset}:{line.name}" + (f" (used by {line.consumer or 'kernel'})" if line.used else "")
                              for line in chip.lines if line.name)
            lines.append(f"gpio: {chip.path} ({chip.name}, label '{chip.label}'): {named or f'{len(chip.lines)} unnamed lines'}")
    except Exception as exc:
        lines.append(f"gpio: not usable ({str(exc).splitlines()[0]})")
    return "\n".join(lines)
