#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh Debian machine, then runs them.
#   bash tests/run.sh [pytest args]
# - Debian packages for the real-component tests (journald, systemd-nspawn; dpkg-dev for the packages
#   systemd/deb/build.sh makes; chromium and chromium-driver for the station page's browser tests, openssl for its
#   HTTPS tests and the publisher's TLS broker; mosquitto for the publisher's tests, prometheus for promtool,
#   systemd-journal-remote and iproute2 for the fleet test), when run as root; the arm64 root's own (qemu-user-static)
#   come with .ci/arm64-root.sh
# - .venv with inspectd + the export extra (torch, anomalib) + the plant extra (paho-mqtt) + test tools
# - the cached Debian root that systemd-nspawn boots (.ci/nspawn-root.sh), and the emulated Pi's (.ci/arm64-root.sh, in
#   the background)
set -euo pipefail
cd "$(dirname "$0")/.."

# mosquitto, openssl: the publisher's broker (tests/harness/mosquitto.py); prometheus: promtool for the metrics;
# systemd-journal-remote, iproute2: the fleet test (its containers get the journal-remote .debs from this apt)
packages=(systemd systemd-container debootstrap libsystemd-dev pkg-config util-linux dpkg-dev chromium chromium-driver openssl
          mosquitto prometheus systemd-journal-remote iproute2)
if [[ $(id -u) == 0 ]]; then
    missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        echo "tests/run.sh: apt-get install ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    # The emulated Pi's root takes longest to build (debootstrap under QEMU): it starts now, beside the rest of the
    # set-up and the first tests; the arm64 tests wait for it (the script holds a lock) or reuse it when cached.
    mkdir -p /var/cache/inspectd-ci
    bash .ci/arm64-root.sh >/var/cache/inspectd-ci/arm64-root.log 2>&1 &
    bash .ci/nspawn-root.sh || echo "tests/run.sh: no nspawn root; the systemd unit tests will skip" >&2
else
    echo "tests/run.sh: not root: journald/nspawn tests will skip" >&2
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[export,dev,plant]'
if pkg-config --exists libsystemd 2>/dev/null; then
    .venv/bin/pip install -q systemd-python
fi
# Two workers (tests/conftest.py says which tests share one); INSPECTD_TEST_WORKERS=0 runs them in this process.
exec .venv/bin/python -m pytest -n "${INSPECTD_TEST_WORKERS:-2}" --dist loadfile "$@"
