#!/usr/bin/env bash
# Benchmarks. Usage: scripts/bench.sh core [google-benchmark args...]
#   core    scheduling core micro-benchmarks (bench/bench_core.cpp), Release build in build-bench/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-core}
shift || true
build_dir="$root/build-bench"

case "$what" in
  core)
    "$root/scripts/setup.sh"
    "$root/scripts/build.sh" "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON >/dev/null
    "$build_dir/bench/bench_core" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@"
    ;;
  *)
    echo "usage: scripts/bench.sh core [benchmark args...]" >&2
    exit 2
    ;;
esac
