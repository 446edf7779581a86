#!/usr/bin/env bash
# Packaging test (suite 'packaging'): an application built against libws
# both ways the README shows, installed into a staging directory and run.
#   1. libws's own build, `meson install --destdir` into a staging
#      directory: the libraries, headers, pkg-config files and the
#      programs under their installed names (libws-echo-server,
#      libws-chat, libws-wscat: each must run --version); then
#      tests/consumer built through pkg-config against that staging
#      prefix, installed with --destdir, and run.
#   2. tests/consumer with libws as a meson subproject (the README's
#      snippet), installed with --destdir, and run with nothing of libws
#      installed: the subproject's libraries are static, so the
#      application needs no libws*.so.
#
# usage: tests/consumer/run.sh SOURCE_ROOT BUILD_DIR
# SPDX-License-Identifier: MIT
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/libws-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
quiet() { # runs a command, shows its output only if it fails
  "$@" >"$work/cmd.log" 2>&1 || { cat "$work/cmd.log"; fail "$*"; }
}

echo "-- 1. the installed libraries, through pkg-config"
quiet meson install -C "$build" --no-rebuild --destdir "$work/stage"
pc=$(find "$work/stage" -name libws.pc | head -1)
[ -n "$pc" ] || fail "no libws.pc installed"
pcdir=$(dirname "$pc")
so=$(find "$work/stage" -name libws.so.0 | head -1)
[ -n "$so" ] || fail "no libws.so.0 (soname) installed"
libdir=$(dirname "$so")
for lib in libws_epoll libws_mbedtls; do
  if [ -e "$build/lib/adapters/$lib.so" ]; then
    [ -e "$libdir/$lib.so.0" ] || fail "$lib.so.0 not installed"
  fi
done
for p in "$pcdir"/*.pc; do
  name=$(basename "$p" .pc)
  PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$work/stage \
    pkg-config --exists "$name" || fail "pkg-config $name"
  echo "pkg-config: $name $(PKG_CONFIG_PATH=$pcdir pkg-config --modversion "$name")"
done
for prog in libws-echo-server libws-chat libws-wscat; do
  exe=$(find "$work/stage" -path "*/bin/$prog" | head -1)
  [ -n "$exe" ] || fail "$prog not installed"
  # Every program should know --version; what matters here is that the
  # installed binary loads its installed libraries and runs.
  rc=0
  out=$(LD_LIBRARY_PATH=$libdir "$exe" --version 2>&1) || rc=$?
  case $out in *"error while loading"*) fail "$prog: $out" ;; esac
  [ "$rc" -lt 126 ] || fail "$prog did not run ($rc): $out"
  echo "$prog: $(echo "$out" | head -1) (exit $rc)"
done
cp -r "$src/tests/consumer" "$work/app"
PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$work/stage \
  quiet meson setup "$work/app-build" "$work/app" -Duse_subproject=false
quiet meson compile -C "$work/app-build" -j 2
quiet meson install -C "$work/app-build" --destdir "$work/app-stage"
app=$(find "$work/app-stage" -path '*/bin/ws-consumer' | head -1)
[ -n "$app" ] || fail "ws-consumer not installed"
LD_LIBRARY_PATH=$libdir timeout 60 "$app" || fail "ws-consumer (pkg-config)"

echo "-- 2. libws as a meson subproject"
cp -r "$src/tests/consumer" "$work/sub"
mkdir "$work/sub/subprojects"
# The source tree without build directories or VCS data
(cd "$src" && tar --exclude='./build*' --exclude=./.git -cf - .) |
  (mkdir "$work/sub/subprojects/libws" && tar -xf - -C "$work/sub/subprojects/libws")
quiet meson setup "$work/sub-build" "$work/sub" -Duse_subproject=true
quiet meson compile -C "$work/sub-build" -j 2
quiet meson install -C "$work/sub-build" --destdir "$work/sub-stage"
app=$(find "$work/sub-stage" -path '*/bin/ws-consumer' | head -1)
[ -n "$app" ] || fail "ws-consumer not installed"
if find "$work/sub-stage" -name 'libws*' | grep -q .; then
  fail "the subproject installed files of its own: $(find "$work/sub-stage" -name 'libws*')"
fi
if readelf -d "$app" | grep NEEDED | grep -q libws; then
  fail "ws-consumer needs a libws shared library: $(readelf -d "$app" | grep NEEDED)"
fi
env -u LD_LIBRARY_PATH timeout 60 "$app" || fail "ws-consumer (subproject)"
echo "packaging: ok"
