#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60) on a copy of its seed corpus.
# Usage: scripts/fuzz.sh [SECONDS] [target...]     e.g. scripts/fuzz.sh 600 fuzz_config
# Builds with clang into build-fuzz/. New interesting inputs go to build-fuzz/corpus/<target>
# (not into the repository); a crash leaves its input as build-fuzz/crash-* and fails the script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
build_dir="$root/build-fuzz"
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=()
  for f in "$root"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

if [[ "${SLUICE_SKIP_SETUP:-0}" != 1 ]]; then "$root/scripts/setup.sh"; fi
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
if [[ ! -f "$build_dir/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSLUICE_FUZZ=ON -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$build_dir" -j "${SLUICE_JOBS:-$(nproc)}" --target "${targets[@]}"

status=0
for t in "${targets[@]}"; do
  work="$build_dir/corpus/${t#fuzz_}"
  mkdir -p "$work"
  echo "== $t for ${seconds}s" >&2
  if ! (cd "$build_dir" && "./tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "$work" "$root/tests/fuzz/corpus/${t#fuzz_}" \
        2>"$build_dir/$t.log"); then
    echo "fuzz: $t FAILED; see $build_dir/$t.log and $build_dir/crash-*" >&2
    tail -40 "$build_dir/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build_dir/$t.log" | tail -2 >&2 || true
  fi
done
exit $status
