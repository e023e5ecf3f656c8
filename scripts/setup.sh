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
    # Node for the real-client tests (tests/clients, ctest clients_node). A Node from elsewhere
    # that already brings npm is kept (Debian's npm would conflict with it).
    if ! command -v node >/dev/null 2>&1; then packages+=(nodejs); fi
    if ! command -v npm >/dev/null 2>&1; then packages+=(npm); fi
    if [[ "${1:-}" == "--bench" ]]; then
      packages+=(haproxy wrk nginx-light python3)
    fi
    ;;
  *) echo "setup: unknown argument $1 (usage: scripts/setup.sh [--bench | --image])" >&2; exit 64 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
# The npm packages of the real-client tests, pinned by tests/clients/package-lock.json; `npm ci`
# needs the registry once, then the tests run offline.
install_clients() {
  [[ "${1:-}" == "--image" ]] && return 0
  [[ -d "$root/tests/clients/node_modules/ollama" ]] && return 0
  command -v npm >/dev/null 2>&1 || return 0
  echo "setup: npm ci in tests/clients" >&2
  (cd "$root/tests/clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  install_clients "${1:-}"
  exit 0
fi

if dpkg-query -W -f='${Status}' libboost-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "setup: warning: libboost-dev (Boost 1.74) is installed; it conflicts with Boost 1.81" >&2
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_clients "${1:-}"
echo "setup: done" >&2
