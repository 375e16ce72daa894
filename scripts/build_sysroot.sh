#!/usr/bin/env bash
# A Debian sid sysroot holding the CPythons fleets run now (3.13, 3.14, 3.15 with their -dbg
# packages, their headers, and the free-threaded builds the archive has) and the C library's
# debug symbols (libc6-dbg: signatures name its functions, strlen or abort), for the test suite
# and for deriving layout tables from DWARF and headers (scripts/derive_layouts.py). Built once (about 3 minutes) and cached outside the clone:
#
#   scripts/build_sysroot.sh [DIR]      default: $TRIAGE_SYSROOT, else ~/.cache/triage/sid-sysroot
#
# Prints DIR on its last line when the sysroot is ready; exits non-zero (one line on stderr)
# when it cannot be built here (not root, no debootstrap and no apt-get, no network). A rerun
# with the sysroot in place returns at once. Needs root (debootstrap, chroot).
set -euo pipefail

DIR=${1:-${TRIAGE_SYSROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/triage/sid-sysroot}}
# Wanted packages; the optional ones are installed when the archive has them.
REQUIRED="python3.13 python3.13-dbg python3.14 python3.14-dbg python3.15
  libpython3.13-dev libpython3.14-dev libpython3.15-dev libc6-dbg"
OPTIONAL="python3.15-dbg python3.13-nogil python3.14-nogil python3.15-nogil"
STAMP="$DIR/.triage-sysroot"
WANT="v3 $(echo $REQUIRED) | $OPTIONAL"

fail() { echo "build_sysroot: $*" >&2; exit 1; }

if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$WANT" ]; then
  echo "$DIR"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap and chroot): run the tests as root to build $DIR"

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
# Another run may have finished it while this one waited for the lock.
if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$WANT" ]; then
  echo "$DIR"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "debootstrap is missing and there is no apt-get to install it"
  echo "build_sysroot: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } \
    || fail "could not install debootstrap with apt-get"
fi

WORK="$DIR.partial"
rm -rf "$WORK"
echo "build_sysroot: debootstrap sid into $WORK (a few minutes, once)" >&2
debootstrap --variant=minbase sid "$WORK" >"$DIR.log" 2>&1 \
  || fail "debootstrap failed (see $DIR.log)"

in_root() { chroot "$WORK" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
# The archive's Release file can read as expired against this machine's clock.
in_root apt-get -o Acquire::Check-Valid-Until=false update >>"$DIR.log" 2>&1 \
  || fail "apt-get update inside the sysroot failed (see $DIR.log)"
packages=$REQUIRED
for p in $OPTIONAL; do
  if in_root apt-cache show "$p" >/dev/null 2>&1; then packages="$packages $p"; fi
done
echo "build_sysroot: installing $packages" >&2
in_root apt-get -o Acquire::Check-Valid-Until=false install -y --no-install-recommends $packages \
  >>"$DIR.log" 2>&1 || fail "apt-get install $packages failed (see $DIR.log)"
in_root apt-get clean >>"$DIR.log" 2>&1 || true

{ echo "$WANT"; echo "installed: $packages"; in_root dpkg-query -W $packages; } >"$WORK/.triage-sysroot"
rm -rf "$DIR"
mv "$WORK" "$DIR"
echo "$DIR"
