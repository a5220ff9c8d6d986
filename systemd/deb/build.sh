#!/usr/bin/env bash
# Build the inspectd Debian package for a Raspberry Pi 5 (arm64) or an x86 station (amd64),
# installable with no network on Raspberry Pi OS Bookworm 64-bit / Debian bookworm:
#
#   systemd/deb/build.sh ARCH [OUT_DIR]      ARCH: arm64 | amd64; writes OUT_DIR/inspectd_<version>_<ARCH>.deb (default OUT_DIR: dist)
#   env: PYTHON (a CPython 3.11 with pip; default python3), INSPECTD_CI_CACHE (default /var/cache/inspectd-ci),
#        INSPECTD_MAINTAINER
#
# Inside: inspectd and its runtime (systemd/deb/requirements.txt) as CPython 3.11 wheels for ARCH,
# installed here into usr/lib/inspectd/python; /usr/bin/inspectd puts that folder first on
# sys.path. The wheels are downloaded once per ARCH and pins into $INSPECTD_CI_CACHE/deb-wheels.
# Exit 2: a usage error; 75: the wheels can be neither downloaded nor found in the cache.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "build.sh: $*" >&2; exit "${code:-1}"; }

[[ $# -ge 1 && $# -le 2 ]] || code=2 die "usage: systemd/deb/build.sh arm64|amd64 [OUT_DIR]"
arch=$1
case $arch in
    arm64) machine=aarch64 elf="AArch64" ;;
    amd64) machine=x86_64 elf="Advanced Micro Devices X86-64" ;;
    *) code=2 die "ARCH must be arm64 (Raspberry Pi OS 64-bit) or amd64, not '$arch'" ;;
esac
out=$(mkdir -p "${2:-dist}" && cd "${2:-dist}" && pwd)
python=${PYTHON:-python3}

# Debian's own tools: dpkg-deb (dpkg) and readelf (binutils, with dpkg-dev).
if ! command -v dpkg-deb >/dev/null || ! command -v readelf >/dev/null; then
    [[ $(id -u) == 0 ]] || die "needs dpkg-deb and readelf: apt-get install dpkg-dev"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-dev
fi
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null ||
    die "PYTHON=$python is not CPython 3.11 (Bookworm's python3): the bundled modules are compiled for 3.11"
"$python" -m pip --version >/dev/null 2>&1 || die "PYTHON=$python has no pip: apt-get install python3-pip, or set PYTHON"

version=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip() { "$python" -m pip --disable-pip-version-check "$@"; }

# ---- the runtime's wheels for ARCH, cached by ARCH + pins
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_${machine}"); done  # Bookworm: glibc 2.36
platforms+=(--platform "manylinux2014_${machine}")
target=(--python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" --only-binary=:all:)
cache=${INSPECTD_CI_CACHE:-/var/cache/inspectd-ci}/deb-wheels
mkdir -p "$cache" 2>/dev/null && [[ -w $cache ]] || cache=${XDG_CACHE_HOME:-$HOME/.cache}/inspectd/deb-wheels
key=$( { echo "$arch ${target[*]}"; grep -v '^ *#' "$here/requirements.txt"; } | sha256sum | cut -c1-16)
wheels=$cache/$arch-$key
if [[ ! -f $wheels/.complete ]]; then
    mkdir -p "$cache"
    partial=$(mktemp -d "$cache/.$arch-$key.XXXXXX")
    echo "build.sh: downloading the $arch wheels into $wheels" >&2
    if ! pip download --quiet --no-deps "${target[@]}" --dest "$partial" -r "$here/requirements.txt" 2>"$work/download.log"; then
        rm -rf "$partial"
        code=75 die "cannot download the $arch wheels and none are cached in $wheels: $(grep -m1 -E 'ERROR|error' "$work/download.log" || tail -n1 "$work/download.log")"
    fi
    cp "$here/requirements.txt" "$partial/.complete"
    rm -rf "$wheels"
    mv "$partial" "$wheels"
fi

# ---- inspectd's own wheel, from a copy of the working tree (nothing is written into the checkout)
mkdir -p "$work/src" "$work/own"
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md daemon export models tests/harness | tar -C "$work/src" -xf -
isolation=--no-build-isolation
"$python" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 68)' 2>/dev/null || isolation=
pip wheel --quiet --no-deps $isolation --wheel-dir "$work/own" "$work/src" >"$work/wheel.log" 2>&1 ||
    die "building inspectd's wheel failed: $(tail -n3 "$work/wheel.log")"

# ---- the package tree
root=$work/root
lib=$root/usr/lib/inspectd/python
# Offline and --isolated (no pip configuration or environment): the pinned wheels must be the
# whole runtime; a dependency missing from requirements.txt stops the build here.
pip install --isolated --quiet --no-index --find-links "$wheels" --find-links "$work/own" "${target[@]}" \
    --target "$lib" -r "$here/requirements.txt" "inspectd==$version" >"$work/install.log" 2>&1 ||
    die "installing the $arch runtime from $wheels failed (is requirements.txt complete?): $(grep -m1 ERROR "$work/install.log" || tail -n1 "$work/install.log")"
rm -rf "$lib/inspectd/testing"  # the tests' harnesses (inspectd.testing): not for a station
rm -rf "$lib/bin"  # console scripts written for this machine's interpreter; /usr/bin/inspectd replaces them
find "$lib" -name direct_url.json -path '*.dist-info/*' -delete  # it names this build's temp folder
[[ -f $lib/inspectd/models/demo-mug/model.xml ]] || die "the demo model is missing from inspectd's wheel"
[[ -f $lib/inspectd/daemon/web/static/page.js ]] || die "the station page's files are missing from inspectd's wheel"

# Every ELF file is for ARCH, and needs only libraries that ship beside it or that the Depends
# bring (libc6, libstdc++6, libgcc-s1, zlib1g). libOpenCL is the Intel GPU plugin's alone (an
# x86 GPU, with an OpenCL ICD installed): the CPU plugin that inspectd runs does not load it.
system_libs='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libutil\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libz\.so\.1|ld-linux-(aarch64|x86-64)\.so\.[12])$'
optional_libs='^libOpenCL\.so\.1$'
bundled=$(find "$lib" -name '*.so*' -printf '%f\n' | sort -u)
problems=()
while IFS= read -r -d '' file; do
    head -c4 "$file" | grep -q $'^\x7fELF' || continue
    machine_of=$(readelf -h "$file" | sed -n 's/^ *Machine: *//p')
    [[ $machine_of == "$elf" ]] || problems+=("${file#"$lib"/} is for $machine_of, not $arch")
    for needed in $(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        grep -qxF "$needed" <<<"$bundled" || [[ $needed =~ $system_libs || $needed =~ $optional_libs ]] ||
            problems+=("${file#"$lib"/} needs $needed, which is neither bundled nor brought by the package's Depends")
    done
done < <(find "$lib" -type f \( -name '*.so' -o -name '*.so.*' \) -print0)
((${#problems[@]} == 0)) || die "$(printf '%s; ' "${problems[@]}")"

install -D -m 0755 "$here/inspectd" "$root/usr/bin/inspectd"
install -D -m 0644 "$repo/systemd/inspectd.service" "$root/lib/systemd/system/inspectd.service"
grep -qx 'ExecStart=/usr/bin/inspectd run --config /etc/inspectd/inspectd.toml' "$root/lib/systemd/system/inspectd.service" ||
    die "systemd/inspectd.service must start /usr/bin/inspectd run --config /etc/inspectd/inspectd.toml"
install -D -m 0644 "$repo/systemd/inspectd-web.service" "$root/lib/systemd/system/inspectd-web.service"
install -D -m 0644 "$repo/systemd/inspectd-setup.service" "$root/lib/systemd/system/inspectd-setup.service"
install -D -m 0644 "$repo/systemd/web.toml" "$root/etc/inspectd/web.toml"
install -D -m 0644 "$repo/systemd/inspectd.catalog" "$root/usr/lib/systemd/catalog/inspectd.catalog"
install -D -m 0644 "$repo/systemd/inspectd.toml" "$root/etc/inspectd/inspectd.toml"
install -D -m 0644 "$repo/systemd/inspectd-publish.service" "$root/lib/systemd/system/inspectd-publish.service"
install -D -m 0644 "$repo/systemd/publish.toml" "$root/etc/inspectd/publish.toml"
install -D -m 0644 "$here/inspectd.sysusers" "$root/usr/lib/sysusers.d/inspectd.conf"
install -D -m 0644 "$here/inspectd.tmpfiles" "$root/usr/lib/tmpfiles.d/inspectd.conf"
install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/inspectd/README.md"
install -D -m 0644 "$here/copyright" "$root/usr/share/doc/inspectd/copyright"
find "$root" -type d -exec chmod 0755 {} +
find "$lib" -type f -exec chmod u+w,go-w,a+r {} +

install -d "$root/DEBIAN"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" \
    -e "s|@MAINTAINER@|${INSPECTD_MAINTAINER:-inspectd maintainers <inspectd@localhost>}|" \
    -e "s|@INSTALLED_SIZE@|$(du -sk --apparent-size "$root" | cut -f1)|" "$here/control" >"$root/DEBIAN/control"
printf '%s\n' /etc/inspectd/inspectd.toml /etc/inspectd/web.toml /etc/inspectd/publish.toml >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$root/DEBIAN/$script"; done

deb=$out/inspectd_${version}_${arch}.deb
# zstd, not xz: xz -6 took 6 minutes for these 420 MB here, zstd -6 a few seconds; Bookworm's dpkg (1.21.22) reads it.
dpkg-deb --root-owner-group -Zzstd -z6 --build "$root" "$deb" >/dev/null
echo "$deb"
