#!/usr/bin/env bash
# Installs the Debian 12 packages sluice needs to build, test and benchmark. Idempotent and quiet
# when everything is already there. Usage: scripts/setup.sh [--bench | --image]
#   (none)    everything a developer and CI use: the build, the tests, ccache, the micro-benchmarks
#             (Google Benchmark) and the fuzzers (clang, libclang-rt)
#   --bench   also install the benchmark peers (haproxy, wrk, nginx-light; python3 for a helper)
#   --image   only what the Dockerfile's build stage needs: a Release build without the
#             micro-benchmarks (-DSLUICE_BUILD_BENCH=OFF) and its test suite
# Never installs libboost-dev (Boost 1.74): sluice uses Boost 1.81 and the two conflict.
set -euo pipefail

# The build and the test suite (curl: scripts/run.sh probes for Ollama with it, and e2e_app runs
# run.sh).
packages=(
  g++ cmake ninja-build pkg-config curl
  libboost1.81-dev libboost-url1.81-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev doctest-dev
  prometheus-cpp-dev libssl-dev libgoogle-perftools-dev
)
case "${1:-}" in
  --image) ;;
  ""|--bench)
    # Developer tools: ccache, git, the micro-benchmarks and the fuzzers (scripts/fuzz.sh).
    packages+=(ccache git ca-certificates procps libbenchmark-dev clang libclang-rt-14-dev)
    if [[ "${1:-}" == "--bench" ]]; then
      packages+=(haproxy wrk nginx-light python3)
    fi
    ;;
  *) echo "setup: unknown argument $1 (usage: scripts/setup.sh [--bench | --image])" >&2; exit 64 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
((${#missing[@]} == 0)) && exit 0

if dpkg-query -W -f='${Status}' libboost-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "setup: warning: libboost-dev (Boost 1.74) is installed; it conflicts with Boost 1.81" >&2
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
