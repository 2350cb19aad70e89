#!/bin/sh
# scripts/setup.sh -- install what strata needs (Debian 12), then configure
# and build it. Safe to run again: it only does what is missing.
# Sourced by scripts/demo.sh and scripts/test.sh; also runnable alone.
set -e
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

PKGS="build-essential autoconf automake libtool pkg-config libzstd-dev libsqlite3-dev sqlite3 tcl libsqlite3-tcl python3"
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
else
  say "Debian packages already installed"
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
  say "generating the build system (autoreconf)"
  autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt config.status ]; then
  say "configuring"
  ./configure --enable-werror >/dev/null
fi
say "building"
make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
say "built: .libs/strata.so (SQLite extension), strata-bench"
