#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (--disable-gil) once, into a cache
# directory, and print its interpreter's path as the last line of stdout.
#
# Why a build: no registry this project can reach (PyPI, Debian's packages)
# offers a free-threaded CPython for Debian 12. Debian 13 (trixie) ships the
# source of python3.13; its upstream tarball (the .orig.tar.xz) builds with
# ./configure --disable-gil in a few minutes on 2 cores. Debian's own patches
# are not applied: we want upstream's free-threaded build.
#
# Usage: scripts/install-free-threaded-python.sh
#   LOOPGRID_FT_CACHE  where to build and install (default ~/.cache/loopgrid/python3.13t);
#                      an interpreter already there is reused.
# Needs root for apt-get (build dependencies and the trixie deb-src entry) on a
# machine that lacks them; progress goes to stderr.
set -euo pipefail

CACHE="${LOOPGRID_FT_CACHE:-$HOME/.cache/loopgrid/python3.13t}"
PY="$CACHE/bin/python3.13t"
log() { echo "install-free-threaded-python: $*" >&2; }

works() {
  [ -x "$PY" ] && "$PY" -c 'import sys, ssl, ctypes, sqlite3, lzma, bz2, zlib, _hashlib
assert not sys._is_gil_enabled(), "the GIL is enabled"' >/dev/null 2>&1
}

if works; then
  log "reusing $PY"
  echo "$PY"
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Build dependencies, from the machine's own Debian release.
DEPS=(build-essential pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev
      liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev)
missing=()
for p in "${DEPS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing build dependencies: ${missing[*]}"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# The source: trixie's python3.13, through a deb-src entry of its own (source
# packages only, so no trixie binary can ever be installed from it).
SRC_LIST=/etc/apt/sources.list.d/loopgrid-trixie-src.sources
if [ ! -f "$SRC_LIST" ]; then
  log "adding $SRC_LIST (deb-src only)"
  as_root tee "$SRC_LIST" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
WORK="$CACHE.build"
mkdir -p "$WORK"
cd "$WORK"
if ! ls python3.13_*.orig.tar.xz >/dev/null 2>&1; then
  log "fetching the python3.13 source package"
  as_root apt-get update -qq -o Dir::Etc::sourcelist="$SRC_LIST" -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0 >&2
  apt-get source --download-only -qq python3.13 >&2
fi
TARBALL=$(ls python3.13_*.orig.tar.xz | head -n 1)
rm -rf src && mkdir src
tar -xJf "$TARBALL" -C src --strip-components=1

log "building $(basename "$TARBALL" .orig.tar.xz) with --disable-gil into $CACHE (a few minutes)"
start=$(date +%s)
cd src
./configure --disable-gil --prefix="$CACHE" --with-ensurepip=install >configure.log 2>&1 \
  || { tail -40 configure.log >&2; exit 1; }
make -j"$(nproc)" >make.log 2>&1 || { tail -40 make.log >&2; exit 1; }
make install >install.log 2>&1 || { tail -40 install.log >&2; exit 1; }
log "built in $(( $(date +%s) - start )) s"
cd / && rm -rf "$WORK/src"

if ! works; then
  log "the build at $PY does not work as expected:"
  "$PY" -c 'import sys, ssl, ctypes, sqlite3, lzma, bz2, zlib, _hashlib; print(sys._is_gil_enabled())' >&2 || true
  exit 1
fi
echo "$PY"
