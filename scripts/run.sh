#!/usr/bin/env bash
# Installs what is missing, builds, and starts sluice in front of Ollama — or, when no Ollama
# answers, in front of the bundled GPU simulator (sluice-sim), which this script then starts and
# stops itself. Ctrl-C (or SIGTERM) shuts sluice down gracefully and stops the simulator.
#
# Usage: scripts/run.sh [--config FILE] [--ollama URL] [--build-dir DIR] [--no-build]
#                       [-- SLUICE_FLAGS...]
# Environment (the flags win):
#   SLUICE_CONFIG       config file                      (default: config/sluice.json)
#   OLLAMA_URL          where to look for Ollama         (default: http://127.0.0.1:11434)
#   SLUICE_LISTEN       override listen, HOST:PORT       (default: the config's, 127.0.0.1:11435)
#   SLUICE_ADMIN_LISTEN override admin_listen            (default: the config's, 127.0.0.1:11436)
#   SLUICE_SIM_ARGS     extra sluice-sim flags           (default: --parallel 2)
#   SLUICE_BUILD_DIR    build directory                  (default: build/)
# Everything after `--` goes to sluice as it is (e.g. -- --max-concurrency 4 --log-level debug).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

config=${SLUICE_CONFIG:-"$root/config/sluice.json"}
ollama=${OLLAMA_URL:-http://127.0.0.1:11434}
build_dir=${SLUICE_BUILD_DIR:-"$root/build"}
build=1
extra=()
while (($# > 0)); do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --ollama) ollama=${2%/}; shift 2 ;;
    --no-build) build=0; shift ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run: unknown argument $1 (see scripts/run.sh --help)" >&2; exit 64 ;;
  esac
done

if ((build)); then
  "$root/scripts/setup.sh"
  echo "run: building (Release) in $build_dir ..." >&2
  "$root/scripts/build.sh" "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
sluice_bin="$build_dir/src/app/sluice"
sim_bin="$build_dir/src/sim/sluice-sim"
for b in "$sluice_bin" "$sim_bin"; do
  [[ -x "$b" ]] || { echo "run: $b is missing; run without --no-build" >&2; exit 1; }
done

workdir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-run.XXXXXX")
sim_pid=""
sluice_pid=""
cleanup() {
  local status=$?
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not orphan the children; drain_timeout bounds the wait
  if [[ -n "$sluice_pid" ]] && kill -0 "$sluice_pid" 2>/dev/null; then
    kill -TERM "$sluice_pid" 2>/dev/null || true
    wait "$sluice_pid" 2>/dev/null || true
  fi
  if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
    echo "run: stopping the simulator (pid $sim_pid)" >&2
    kill -TERM "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits (bounded) until file $1 has a line starting with $2; prints the rest of that line.
wait_for_line() {
  local file=$1 prefix=$2 pid=$3 i
  for ((i = 0; i < 200; i++)); do
    if line=$(grep -m1 "^$prefix" "$file" 2>/dev/null); then
      echo "${line#"$prefix"}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

if version=$(curl -fsS -m 2 "$ollama/api/version" 2>/dev/null); then
  upstream=$ollama
  echo "run: found Ollama at $ollama ($version); sluice will proxy to it" >&2
else
  read -r -a sim_args <<<"${SLUICE_SIM_ARGS:---parallel 2}"
  # Own session: a Ctrl-C on the terminal reaches this script only; cleanup stops the children in
  # order (sluice drains first, then the simulator goes).
  setsid "$sim_bin" --listen 127.0.0.1:0 "${sim_args[@]}" >"$workdir/sim.out" 2>"$workdir/sim.err" &
  sim_pid=$!
  if ! sim_url=$(wait_for_line "$workdir/sim.out" "listening on " "$sim_pid"); then
    echo "run: the simulator did not start:" >&2
    cat "$workdir/sim.err" >&2
    exit 1
  fi
  upstream=$sim_url
  echo "run: no Ollama at $ollama; starting the bundled GPU simulator at $sim_url" \
    "(sluice-sim ${sim_args[*]}, pid $sim_pid)" >&2
fi

args=(--config "$config" --upstream "$upstream")
[[ -n "${SLUICE_LISTEN:-}" ]] && args+=(--listen "$SLUICE_LISTEN")
[[ -n "${SLUICE_ADMIN_LISTEN:-}" ]] && args+=(--admin-listen "$SLUICE_ADMIN_LISTEN")
args+=("${extra[@]}")

# sluice's stdout goes to the terminal and to a file we read the bound addresses from.
setsid "$sluice_bin" "${args[@]}" > >(tee "$workdir/sluice.out") &
sluice_pid=$!
if ! url=$(wait_for_line "$workdir/sluice.out" "listening on " "$sluice_pid"); then
  wait "$sluice_pid" 2>/dev/null && status=0 || status=$?
  sluice_pid=""
  echo "run: sluice did not start (exit status $status)" >&2
  exit "$status"
fi
admin_url=$(wait_for_line "$workdir/sluice.out" "admin listening on " "$sluice_pid" || true)

cat >&2 <<MSG

run: sluice is listening on $url, in front of $upstream
run: try a request (the X-User-Id / X-Tier headers choose who is served first):

  curl -N $url/api/generate -H 'X-User-Id: alice' -H 'X-Tier: paid' -d '{"model": "mistral", "prompt": "Why is the sky blue?"}'

MSG
if [[ -n "$admin_url" ]]; then
  echo "run: queue and limits: curl $admin_url/admin/state    metrics: curl $admin_url/metrics" >&2
fi
echo "run: Ctrl-C stops sluice (and the simulator, if this script started it)" >&2

set +e
wait "$sluice_pid"
status=$?
set -e
sluice_pid=""
exit "$status"
