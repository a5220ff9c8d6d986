#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh Debian machine, then runs them.
#   bash tests/run.sh [pytest args]
# - Debian packages for the real-component tests (journald, systemd-nspawn; dpkg-dev for the packages
#   systemd/deb/build.sh makes; chromium and chromium-driver for the station page's browser tests, openssl for its
#   HTTPS tests), when run as root; the arm64 root's own (qemu-user-static) come with .ci/arm64-root.sh
# - .venv with inspectd + the export extra (torch, anomalib) + test tools
# - the cached Debian root that systemd-nspawn boots (.ci/nspawn-root.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(systemd systemd-container debootstrap libsystemd-dev pkg-config util-linux dpkg-dev chromium chromium-driver openssl)
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
    bash .ci/nspawn-root.sh || echo "tests/run.sh: no nspawn root; the systemd unit tests will skip" >&2
else
    echo "tests/run.sh: not root: journald/nspawn tests will skip" >&2
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[export,dev]'
if pkg-config --exists libsystemd 2>/dev/null; then
    .venv/bin/pip install -q systemd-python
fi
exec .venv/bin/python -m pytest "$@"
