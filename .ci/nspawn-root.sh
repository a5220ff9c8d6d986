#!/usr/bin/env bash
# Build (once) a minimal Debian bookworm root that systemd-nspawn can boot, for the
# real-systemd tests (tests/harness/nspawn.py). Reused while it exists and is complete;
# built in a temp dir next to it and renamed into place, so a half-built root never counts.
#
#   .ci/nspawn-root.sh [ROOT]     default ROOT: /var/cache/inspectd-ci/bookworm-root
#   env: DEBIAN_MIRROR (default: the first Debian URI in this host's apt sources), INSPECTD_NSPAWN_REBUILD=1
#
# Host needs (installed here with apt-get if missing): debootstrap, systemd-container.
set -euo pipefail

ROOT=${1:-${INSPECTD_NSPAWN_ROOT:-/var/cache/inspectd-ci/bookworm-root}}
host_mirror() {
    # The mirror this host's apt already uses (deb822 "URIs:" or one-line "deb URI suite").
    { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } |
        awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit} /^deb / && $3 == "bookworm" {print $2; exit}'
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
STAMP=.inspectd-root-complete
# Bump when the package list or the tweaks below change, so caches rebuild.
VERSION=3
INCLUDE=systemd,systemd-sysv,dbus,procps,python3,python3-venv,python3-systemd

if [[ -f $ROOT/$STAMP && $(cat "$ROOT/$STAMP") == "$VERSION" && ${INSPECTD_NSPAWN_REBUILD:-0} != 1 ]]; then
    echo "nspawn-root: reusing $ROOT"
    exit 0
fi

[[ $(id -u) == 0 ]] || { echo "nspawn-root: must run as root" >&2; exit 1; }
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if ((${#missing[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

parent=$(dirname "$ROOT")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.bookworm-root.XXXXXX")
chmod 0755 "$tmp"  # mktemp makes it 0700: unprivileged services inside could not reach /
cleanup() {
    # debootstrap mounts proc/sys inside the target; a failed run can leave them behind.
    grep -o " $tmp[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

[[ -n $MIRROR ]] || { echo "nspawn-root: no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR" >&2; exit 1; }
start=$(date +%s)
echo "nspawn-root: debootstrap bookworm into $tmp (mirror $MIRROR)"
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$tmp" "$MIRROR"

# An empty machine-id: every boot gets a fresh transient id instead of sharing one.
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
echo inspectd-ci >"$tmp/etc/hostname"
# Nothing reads the container console in tests; a getty there only restarts and logs noise.
ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
# Keep the root small: package caches are not needed to boot.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*

echo "$VERSION" >"$tmp/$STAMP"
if [[ -e $ROOT ]]; then
    old=$(mktemp -d "$parent/.bookworm-root.old.XXXXXX")
    mv "$ROOT" "$old/root"
    rm -rf --one-file-system "$old"
fi
mv "$tmp" "$ROOT"
trap - EXIT
echo "nspawn-root: built $ROOT in $(( $(date +%s) - start )) s"
