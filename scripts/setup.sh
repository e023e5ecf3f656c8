#!/usr/bin/env bash
# Installs the Debian 12 packages sluice needs to build, test and benchmark. Idempotent and quiet
# when everything is already there. Usage: scripts/setup.sh [--bench]
#   --bench   also install the benchmark peers (haproxy, wrk, nginx-light; python3 for a helper)
# Never installs libboost-dev (Boost 1.74): sluice uses Boost 1.81 and the two conflict.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config git curl ca-certificates procps
  libboost1.81-dev libboost-url1.81-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev doctest-dev
  prometheus-cpp-dev libbenchmark-dev libssl-dev libgoogle-perftools-dev
  clang libclang-rt-14-dev
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(haproxy wrk nginx-light python3)
fi

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
