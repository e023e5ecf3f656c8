#!/usr/bin/env bash
# The one command that installs what is missing, builds and runs every test.
# Usage: scripts/test.sh [ctest args...]      e.g. scripts/test.sh -R scheduler
# Environment: SLUICE_BUILD_DIR (default build/), SLUICE_SKIP_SETUP=1 to skip apt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${SLUICE_BUILD_DIR:-"$root/build"}

if [[ "${SLUICE_SKIP_SETUP:-0}" != 1 ]]; then
  "$root/scripts/setup.sh"
fi

echo "== build ($build_dir)" >&2
"$root/scripts/build.sh" "$build_dir" -DCMAKE_BUILD_TYPE=Release

echo "== test" >&2
cd "$build_dir"
ctest --output-on-failure --timeout 600 -j "${SLUICE_TEST_JOBS:-2}" "$@"
