#!/usr/bin/env bash
# Build (once) a Debian bookworm arm64 root that runs under QEMU user-mode emulation: the
# Raspberry Pi 5's 64-bit userland, for the arm64 tests (tests/harness/arm64.py). Reused while
# it exists and is complete; built in a temp dir next to it and renamed into place, so a
# half-built root never counts.
#
#   .ci/arm64-root.sh [ROOT]     default ROOT: /var/cache/inspectd-ci/bookworm-arm64-root
#   env: DEBIAN_MIRROR (default: the first Debian URI in this host's apt sources), INSPECTD_ARM64_REBUILD=1
#
# Host needs (installed here with apt-get if missing): qemu-user-static, debootstrap; a kernel
# with binfmt_misc (mounted here if it is not). The aarch64 handler is registered from
# qemu-user-static's own line (flags OPF: F opens the interpreter now, so the root needs no
# copy of qemu); a handler already registered without F gets qemu copied into the root.
# Exit 77, with one line saying why, when this host cannot run arm64 binaries at all.
set -euo pipefail

ROOT=${1:-${INSPECTD_ARM64_ROOT:-/var/cache/inspectd-ci/bookworm-arm64-root}}
host_mirror() {
    # The mirror this host's apt already uses (deb822 "URIs:" or one-line "deb URI suite").
    { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } |
        awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit} /^deb / && $3 == "bookworm" {print $2; exit}'
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
STAMP=.inspectd-root-complete
# Bump when the package list or the tweaks below change, so caches rebuild.
VERSION=1
# What a venv + `pip install` of openvino, numpy and opencv-python-headless (manylinux wheels,
# which bring their own libraries but use the system's glibc and libstdc++) needs, plus the
# OS bindings the Pi has (python3-systemd). netbase: /etc/services and /etc/protocols.
INCLUDE=python3,python3-venv,python3-pip,python3-systemd,ca-certificates,netbase,procps
BINFMT=/proc/sys/fs/binfmt_misc
HANDLER=$BINFMT/qemu-aarch64
QEMU=/usr/bin/qemu-aarch64-static
QEMU_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf  # from qemu-user-static: ":qemu-aarch64:M::<magic>:<mask>:<interpreter>:OPF"

unusable() {
    # One line (tests skip with it): the first line of whatever the failing tool said.
    echo "arm64-root: cannot emulate arm64 on this host: $(head -n1 <<<"$*")" >&2
    exit 77
}

handler_flags() { sed -n 's/^flags: *//p' "$HANDLER" 2>/dev/null; }
handler_interpreter() { sed -n 's/^interpreter //p' "$HANDLER" 2>/dev/null; }

# True when the kernel hands aarch64 binaries in $1 to a qemu it can reach: the handler is
# enabled and either opened at registration (F) or present inside the root.
binfmt_ready() {
    [[ $(cat "$BINFMT/status" 2>/dev/null) == enabled && $(head -n1 "$HANDLER" 2>/dev/null) == enabled ]] || return 1
    [[ $(handler_flags) == *F* ]] || [[ -x $1$(handler_interpreter) ]]
}

# binfmt_misc mounted and enabled, the aarch64 handler registered and enabled; exit 77 if impossible.
ensure_binfmt() {
    if [[ ! -e $BINFMT/register ]]; then
        if ! grep -qw binfmt_misc /proc/filesystems; then
            command -v modprobe >/dev/null && modprobe binfmt_misc 2>/dev/null || true
            grep -qw binfmt_misc /proc/filesystems || unusable "the kernel has no binfmt_misc (CONFIG_BINFMT_MISC)"
        fi
        local err
        err=$(mount -t binfmt_misc binfmt_misc "$BINFMT" 2>&1) || unusable "cannot mount binfmt_misc on $BINFMT: $err"
        [[ -e $BINFMT/register ]] || unusable "binfmt_misc mounted but $BINFMT/register is missing"
    fi
    if [[ $(cat "$BINFMT/status") != enabled ]]; then
        echo 1 >"$BINFMT/status" 2>/dev/null || unusable "binfmt_misc is disabled and cannot be enabled ($BINFMT/status)"
    fi
    if [[ ! -e $HANDLER ]]; then
        [[ -r $QEMU_CONF ]] || unusable "$QEMU_CONF missing (qemu-user-static $(dpkg-query -W -f='${Version}' qemu-user-static 2>/dev/null))"
        # Written in one write(2): the kernel parses one registration per write.
        if ! printf '%s' "$(grep -m1 '^:qemu-aarch64:' "$QEMU_CONF")" >"$BINFMT/register" 2>/dev/null && [[ ! -e $HANDLER ]]; then
            unusable "the kernel refused to register the qemu-aarch64 handler in $BINFMT/register"
        fi
        echo "arm64-root: registered qemu-aarch64 in binfmt_misc (flags $(handler_flags))"
    fi
    if [[ $(head -n1 "$HANDLER") != enabled ]]; then
        echo 1 >"$HANDLER" 2>/dev/null || unusable "the qemu-aarch64 binfmt handler is disabled and cannot be enabled"
    fi
}

# Without the F flag the kernel looks the interpreter up inside the chroot: put qemu there.
ensure_interpreter_in() {
    [[ $(handler_flags) == *F* ]] && return 0
    local interp
    interp=$(handler_interpreter)
    [[ -x $1$interp ]] && return 0
    echo "arm64-root: handler has no F flag: copying $QEMU to $1$interp"
    mkdir -p "$(dirname "$1$interp")"
    cp "$QEMU" "$1$interp"
}

# An aarch64 binary from the root really runs, and says so.
probe() {
    local out
    out=$(chroot "$1" /usr/bin/uname -m 2>&1) || unusable "aarch64 binaries do not run in $1: ${out:-exit $?}"
    [[ $out == aarch64 ]] || unusable "uname -m in $1 says '$out', not aarch64"
}

# apt-get, waiting while another apt/dpkg holds the lock (a parallel setup job).
apt_get() {
    local tries=0 log
    log=$(mktemp)
    until DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" 2>"$log"; do
        cat "$log" >&2
        if ! grep -qE 'Could not get lock|Unable to lock' "$log" || ((++tries >= 30)); then
            rm -f "$log"
            return 1
        fi
        echo "arm64-root: apt is busy, retrying in 10 s" >&2
        sleep 10
    done
    cat "$log" >&2
    rm -f "$log"
}

cached=0
if [[ -f $ROOT/$STAMP && $(cat "$ROOT/$STAMP") == "$VERSION" && ${INSPECTD_ARM64_REBUILD:-0} != 1 ]]; then
    cached=1
    if binfmt_ready "$ROOT"; then
        if [[ $(id -u) == 0 ]]; then probe "$ROOT"; fi
        echo "arm64-root: reusing $ROOT"
        exit 0
    fi
fi

[[ $(id -u) == 0 ]] || { echo "arm64-root: must run as root" >&2; exit 1; }
missing=()
[[ -x $QEMU && -r $QEMU_CONF ]] || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    # qemu-user-static's postinst registers nothing inside a container (it checks
    # systemd-detect-virt): ensure_binfmt does it either way.
    apt_get update -q
    apt_get install -y -q --no-install-recommends "${missing[@]}"
fi
ensure_binfmt
parent=$(dirname "$ROOT")
mkdir -p "$parent"
# One build at a time (parallel test workers): the second waits and then reuses the first's.
exec 9>"$parent/.bookworm-arm64-root.lock"
flock 9
if [[ -f $ROOT/$STAMP && $(cat "$ROOT/$STAMP") == "$VERSION" && ${INSPECTD_ARM64_REBUILD:-0} != 1 ]]; then
    ensure_interpreter_in "$ROOT"
    probe "$ROOT"
    echo "arm64-root: reusing $ROOT"
    exit 0
fi

tmp=$(mktemp -d "$parent/.bookworm-arm64-root.XXXXXX")
chmod 0755 "$tmp"  # mktemp makes it 0700
cleanup() {
    # debootstrap mounts proc/sys inside the target; a failed run can leave them behind.
    grep -o " $tmp[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

[[ -n $MIRROR ]] || { echo "arm64-root: no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR" >&2; exit 1; }
start=$(date +%s)
ensure_interpreter_in "$tmp"
echo "arm64-root: debootstrap bookworm arm64 into $tmp (mirror $MIRROR, emulated by $($QEMU --version | head -n1))"
# One stage: the second stage's maintainer scripts run as arm64 binaries through binfmt_misc.
debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" bookworm "$tmp" "$MIRROR"
probe "$tmp"

echo inspectd-ci-arm64 >"$tmp/etc/hostname"
# A plain file, so the harness can bind the host's resolver over it (pip needs DNS).
rm -f "$tmp/etc/resolv.conf"
cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || : >"$tmp/etc/resolv.conf"
# Keep the root small: package caches are not needed to run.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*

echo "$VERSION" >"$tmp/$STAMP"
if [[ -e $ROOT ]]; then
    old=$(mktemp -d "$parent/.bookworm-arm64-root.old.XXXXXX")
    mv "$ROOT" "$old/root"
    rm -rf --one-file-system "$old"
fi
mv "$tmp" "$ROOT"
trap - EXIT
echo "arm64-root: built $ROOT in $(( $(date +%s) - start )) s ($(du -sh --one-file-system "$ROOT" | cut -f1))"
