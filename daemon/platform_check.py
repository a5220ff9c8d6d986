"""Can this machine run the station? If not, one line that names the fix.

The study this project starts from lost weeks to a 32-bit Raspberry Pi OS, where pip says
only "no matching distribution found for openvino". OpenVINO, numpy and OpenCV publish
64-bit wheels only (x86_64, aarch64) for glibc Linux; a Pi 4/5 often boots a 64-bit kernel
under a 32-bit userland, so ``uname -m`` says aarch64 while nothing installs.

Standard library only and no package imports: pyproject.toml runs it as the first step of
the build backend, so ``pip install`` on a wrong platform stops with this line before pip
looks for wheels; ``inspectd doctor`` and the CLI report the same lines.

    >>> problems(machine="aarch64", pointer_bits=32, python=(3, 11), libc=("glibc", "2.36"))[0][:60]
    'this Python is 32-bit on a 64-bit (aarch64) kernel: the user'
    >>> problems(machine="aarch64", pointer_bits=64, python=(3, 11), libc=("glibc", "2.36"))
    []
"""

from __future__ import annotations

import os
import platform
import struct
import sys

MIN_PYTHON = (3, 11)  # tomllib, enum.StrEnum; Raspberry Pi OS Bookworm has 3.11
# The oldest glibc of any OpenVINO >= 2025.0 wheel (manylinux tags); aarch64 2026.x needs 2.35.
MIN_GLIBC = {"x86_64": (2, 17), "aarch64": (2, 31)}
FIX_OS = "install Raspberry Pi OS (64-bit) Bookworm on the Pi, or another 64-bit glibc Linux (aarch64 or x86_64)"


def problems(machine: str | None = None, pointer_bits: int | None = None, python: tuple[int, int] | None = None,
             libc: tuple[str, str] | None = None, system: str | None = None) -> list[str]:
    """What stops the runtime here, one line each with its fix; empty when nothing does. Arguments default to this machine."""
    machine = machine or os.uname().machine
    pointer_bits = pointer_bits or struct.calcsize("P") * 8
    python = python or sys.version_info[:2]
    system = system or platform.system()
    found = []
    if python < MIN_PYTHON:
        found.append(f"Python {python[0]}.{python[1]} is too old: inspectd needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer "
                     f"(Bookworm ships 3.11); use a newer OS release or a newer python3")
    if system != "Linux":
        return found
    if pointer_bits == 32:
        kernel = f" on a 64-bit ({machine}) kernel: the userland is 32-bit" if machine in MIN_GLIBC else f" ({machine})"
        found.append(f"this Python is 32-bit{kernel}, and OpenVINO, numpy and OpenCV publish no 32-bit ARM wheels "
                     f"(pip says only 'no matching distribution found for openvino'); {FIX_OS}")
        return found
    if machine not in MIN_GLIBC:
        found.append(f"no OpenVINO wheels exist for {machine}; {FIX_OS}")
        return found
    name, version = libc or platform.libc_ver()
    if name != "glibc":
        found.append(f"this Linux has no glibc ({name or 'musl?'}): OpenVINO's wheels are manylinux (glibc) builds; {FIX_OS}")
    elif _version(version) < MIN_GLIBC[machine]:
        need = ".".join(map(str, MIN_GLIBC[machine]))
        found.append(f"glibc {version} is older than {need}, the oldest any OpenVINO wheel for {machine} supports; "
                     f"upgrade the OS (Raspberry Pi OS Bookworm has glibc 2.36)")
    return found


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return (0,)


class _Backend:
    """PEP 517 build backend: setuptools', after the platform check (pyproject.toml: build-backend)."""

    def __getattr__(self, hook: str):
        found = problems()
        if found:
            raise SystemExit("inspectd: " + "\ninspectd: ".join(found))
        import setuptools.build_meta

        return getattr(setuptools.build_meta, hook)


build_backend = _Backend()
