# shellcheck shell=bash
# Helpers shared by scripts/demo and scripts/test. Source it, do not run it.
# SPDX-License-Identifier: MIT

# Prints a message to stderr.
ws_log() {
  printf '%s\n' "$*" >&2
}

# ws_deb_installed PKG[:ARCH]: true if the Debian package is installed
# (without :ARCH: for the native architecture, or Architecture: all). A
# Multi-Arch: same package installed for two architectures is listed once
# per architecture, so look at each line.
ws_deb_installed() {
  local want=$1 native
  case $want in
  *:*) ;;
  *) native=$(dpkg --print-architecture) ;;
  esac
  dpkg-query -W -f='${binary:Package}\t${Status}\n' "$want" 2>/dev/null |
    awk -F '\t' -v a="$want" -v b="$want:${native:-}" '
      ($1 == a || $1 == b) && $2 == "install ok installed" { found = 1 }
      END { exit !found }'
}

WS_APT_UPDATED=${WS_APT_UPDATED:-0}

# ws_add_arch ARCH: as root on Debian, adds a foreign architecture to dpkg
# if it is not there yet, so that the next `apt-get update` fetches its
# package lists. Call it before ws_install_debs to keep to one update.
ws_add_arch() {
  command -v dpkg >/dev/null 2>&1 || return 0
  [ "$(id -u)" -eq 0 ] || return 0
  if ! dpkg --print-foreign-architectures | grep -qx "$1"; then
    dpkg --add-architecture "$1"
    WS_APT_UPDATED=0
  fi
}

# ws_install_debs PKG...: installs the packages among PKG... that are
# missing, with apt-get (running `apt-get update` once first, and only when
# something must be installed). A PKG:i386 adds the i386 architecture to
# dpkg first. Not root and something missing: prints the command to run and
# returns 1. Not a Debian system: warns and returns 0 (the build will say
# what is missing).
ws_install_debs() {
  local pkg missing=() need_i386=0
  if ! command -v dpkg-query >/dev/null 2>&1; then
    ws_log "warning: not a Debian system; make sure these (or your distribution's equivalents) are installed: $*"
    return 0
  fi
  for pkg in "$@"; do
    if ! ws_deb_installed "$pkg"; then
      missing+=("$pkg")
      case $pkg in *:i386) need_i386=1 ;; esac
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  if [ "$need_i386" = 1 ] && dpkg --print-foreign-architectures | grep -qx i386; then
    need_i386=0
  fi

  if [ "$(id -u)" -ne 0 ]; then
    ws_log "Missing Debian packages: ${missing[*]}"
    ws_log "Install them as root with:"
    if [ "$need_i386" = 1 ]; then
      ws_log "  sudo dpkg --add-architecture i386 &&"
    fi
    ws_log "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    return 1
  fi

  ws_log "Installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$need_i386" = 1 ]; then
    ws_add_arch i386
  fi
  if [ "$WS_APT_UPDATED" != 1 ]; then
    # A mirror that is half-synced for one index must not stop us: the
    # install below fails on its own if a package really cannot be had.
    if ! apt-get -q update; then
      ws_log "warning: apt-get update reported errors; trying to install anyway"
    fi
    WS_APT_UPDATED=1
  fi
  apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends "${missing[@]}"
}

# ws_meson_setup DIR [ARGS...]: configures a meson build directory, or
# reconfigures it with ARGS if it already exists. The output goes to
# DIR.setup.log and is shown only on failure.
ws_meson_setup() {
  local dir=$1 log
  shift
  log="$dir.setup.log"
  mkdir -p "$(dirname "$dir")"
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    set -- --reconfigure "$@"
  fi
  if ! meson setup "$@" "$dir" >"$log" 2>&1; then
    cat "$log" >&2
    ws_log "error: meson setup of $dir failed (log: $log)"
    return 1
  fi
}

# ws_python: prints a python3 that can import websockets (Debian's
# python3-websockets installs into /usr/bin/python3, which may not be the
# first python3 on PATH), or plain python3.
ws_python() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import websockets' >/dev/null 2>&1; then
      printf '%s\n' "$py"
      return 0
    fi
  done
  printf 'python3\n'
}
