#!/usr/bin/env bash
# Configures and builds sluice. Usage: scripts/build.sh [BUILD_DIR] [extra cmake -D args...]
# BUILD_DIR defaults to build/. Uses Ninja and ccache; safe to run repeatedly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-"$root/build"}
shift || true

# ccache: share hits between checkouts of the same tree (paths are rewritten relative to root).
export CCACHE_BASEDIR="$root"
export CCACHE_NOHASHDIR=1

if [[ ! -f "$build_dir/build.ninja" ]]; then
  cmake -S "$root" -B "$build_dir" -G Ninja "$@" >/dev/null
elif (($# > 0)); then
  cmake -S "$root" -B "$build_dir" "$@" >/dev/null
fi
cmake --build "$build_dir" -j "${SLUICE_JOBS:-$(nproc)}"
