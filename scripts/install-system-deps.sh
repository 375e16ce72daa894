#!/usr/bin/env bash
# System packages the test suite uses, installed when missing (Debian/Ubuntu, as root):
#   gdb (gcore makes cores), binutils (strip, readelf), chromium (dashboard page tests).
# Without root, or without apt-get, it only says what is missing: those tests then skip with
# a reason naming the missing program.
set -u
missing=()
command -v gcore >/dev/null 2>&1 || missing+=(gdb)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
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
