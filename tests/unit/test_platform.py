"""The wrong platform gets one line that names the fix (daemon/platform_check.py)."""

from __future__ import annotations

import doctest

import pytest

from inspectd.daemon import platform_check
from inspectd.daemon.platform_check import problems


def test_this_machine_can_run_the_station():
    assert problems() == []


@pytest.mark.parametrize(
    "machine,bits,python,libc,expected",
    [
        ("aarch64", 32, (3, 11), ("glibc", "2.36"), "32-bit on a 64-bit (aarch64) kernel"),  # Pi OS 32-bit, 64-bit kernel
        ("armv7l", 32, (3, 11), ("glibc", "2.36"), "32-bit (armv7l)"),
        ("x86_64", 32, (3, 11), ("glibc", "2.36"), "32-bit on a 64-bit (x86_64) kernel"),
        ("riscv64", 64, (3, 11), ("glibc", "2.36"), "no OpenVINO wheels exist for riscv64"),
        ("aarch64", 64, (3, 11), ("glibc", "2.28"), "glibc 2.28 is older than 2.31"),
        ("aarch64", 64, (3, 11), ("", ""), "no glibc"),
        ("aarch64", 64, (3, 8), ("glibc", "2.36"), "Python 3.8 is too old"),
    ],
)
def test_wrong_platforms_are_named_with_the_fix(machine, bits, python, libc, expected):
    found = problems(machine=machine, pointer_bits=bits, python=python, libc=libc, system="Linux")
    assert len(found) == 1 and expected in found[0], found
    assert "\n" not in found[0] and ("64-bit" in found[0] or "upgrade" in found[0] or "newer" in found[0])


def test_supported_platforms_pass():
    for machine, libc in (("aarch64", "2.36"), ("aarch64", "2.31"), ("x86_64", "2.17")):
        assert problems(machine=machine, pointer_bits=64, python=(3, 11), libc=("glibc", libc), system="Linux") == []


def test_docstring_examples_run():
    assert doctest.testmod(platform_check).failed == 0


def test_the_python_floor_is_one_and_the_code_keeps_to_it():
    """pyproject's requires-python is the platform check's floor, and every module parses as that Python's syntax
    (the suite itself runs on it in CI: .ci/run uses the machine's 3.11, Raspberry Pi OS Bookworm's)."""
    import ast
    import re
    import tomllib

    from conftest import ROOT
    from inspectd.daemon.platform_check import MIN_PYTHON

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.fullmatch(r">=(\d+)\.(\d+)", declared) and tuple(map(int, declared[2:].split("."))) == MIN_PYTHON
    for path in [*(ROOT / "daemon").rglob("*.py"), *(ROOT / "export").rglob("*.py")]:
        ast.parse(path.read_text(), str(path), feature_version=MIN_PYTHON)
