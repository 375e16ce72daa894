#!/usr/bin/env bash
# System packages the test suite uses, installed when missing (Debian/Ubuntu, as root):
#   gdb (gcore makes cores; its backtraces are a reference), binutils (strip, readelf),
#   elfutils (eu-addr2line: PyStack's library, a reference for source lines), chromium
#   (dashboard page tests), the -dbg package of the system's python3 (its release binary's
#   separate debug file: native frames of Debian's own Python get names and lines) and its
#   -dev package, gcc and the C library's headers (the tests compile their own C library and
#   extension module to crash), and libc6-dbg (the C library's own functions named, as
#   signatures name them: strlen, abort).
# Without root, or without apt-get, it only says what is missing: those tests then skip with
# a reason naming the missing program.
set -u
missing=()
command -v gcore >/dev/null 2>&1 || missing+=(gdb)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
command -v eu-addr2line >/dev/null 2>&1 || missing+=(elfutils)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
have_package() { dpkg -s "$1" >/dev/null 2>&1; }
if command -v dpkg >/dev/null 2>&1; then
  have_package libc6-dev || missing+=(libc6-dev)
  have_package libc6-dbg || missing+=(libc6-dbg)
fi
system_python=$(readlink -f /usr/bin/python3 2>/dev/null || true)
case "$system_python" in
  /usr/bin/python3.[0-9]*)
    version=${system_python#/usr/bin/python}
    [ -x "/usr/bin/python${version}d" ] || missing+=("python${version}-dbg")
    [ -f "/usr/include/python${version}/Python.h" ] || missing+=("python${version}-dev")
    ;;
esac
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "could not install ${missing[*]}: the tests that need them will be skipped"
else
  echo "not installed: ${missing[*]} (install them to run every test; those tests skip otherwise)"
fi
exit 0
