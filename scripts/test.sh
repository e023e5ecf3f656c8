#!/usr/bin/env bash
# The one command that installs what is missing, builds and runs every test.
#
# Usage: scripts/test.sh [--quick] [ctest args...]      e.g. scripts/test.sh --quick -R scheduler
# Stages:
#   1. Release build (build/) and the whole ctest suite.
#   2. The same suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/).
#   3. Every libFuzzer target for SLUICE_FUZZ_SECONDS (default 15) on its seed corpus.
# --quick runs stage 1 only (for the edit-compile-test loop). CI runs all three.
# Environment: SLUICE_BUILD_DIR (default build/), SLUICE_SKIP_SETUP=1 to skip apt,
# SLUICE_JOBS (parallel compile jobs), SLUICE_TEST_JOBS (parallel tests, default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${SLUICE_BUILD_DIR:-"$root/build"}
quick=0
if [[ "${1:-}" == "--quick" ]]; then
  quick=1
  shift
fi

if [[ "${SLUICE_SKIP_SETUP:-0}" != 1 ]]; then
  "$root/scripts/setup.sh"
fi
export SLUICE_SKIP_SETUP=1
start=$SECONDS
stage() { echo "== [$((SECONDS - start))s] $*" >&2; }

stage "release build ($build_dir)"
"$root/scripts/build.sh" "$build_dir" -DCMAKE_BUILD_TYPE=Release
stage "tests (release)"
(cd "$build_dir" && ctest --output-on-failure --timeout 600 -j "${SLUICE_TEST_JOBS:-2}" "$@")

if ((quick)); then
  stage "done (--quick: sanitizers and fuzzers skipped)"
  exit 0
fi

asan_dir="${build_dir}-asan"
stage "sanitizer build ($asan_dir)"
"$root/scripts/build.sh" "$asan_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=ON \
  -DSLUICE_BUILD_BENCH=OFF
stage "tests (ASan + UBSan)"
(cd "$asan_dir" &&
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure --timeout 900 -j "${SLUICE_TEST_JOBS:-2}" "$@")

stage "fuzzers (${SLUICE_FUZZ_SECONDS:-15}s each)"
"$root/scripts/fuzz.sh" "${SLUICE_FUZZ_SECONDS:-15}"
stage "all stages passed"
