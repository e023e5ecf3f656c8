#!/usr/bin/env bash
# Benchmarks. Usage: scripts/bench.sh core [google-benchmark args...] | proxy
#   core    scheduling core micro-benchmarks (bench/bench_core.cpp), Release build in build-bench/
#   proxy   sluice vs HAProxy 2.6 vs direct on loopback (wrk), the scheduled path, and RSS with
#           10 000 parked connections (scripts/bench-proxy.sh; prints a Markdown table)
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
  proxy)
    exec "$root/scripts/bench-proxy.sh" "$@"
    ;;
  *)
    echo "usage: scripts/bench.sh core [benchmark args...] | proxy" >&2
    exit 2
    ;;
esac
