#!/usr/bin/env bash
# Installs what is missing, builds, and starts sluice in front of Ollama — or, when no Ollama
# answers, in front of the bundled GPU simulator (sluice-sim), which this script then starts and
# stops itself. Ctrl-C (or SIGTERM) shuts sluice down gracefully and stops the simulator.
#
# Usage: scripts/run.sh [--config FILE] [--ollama URL] [--fleet N] [--build-dir DIR]
#                       [--no-build] [-- SLUICE_FLAGS...]
# --fleet N (1-8): the demo of a fleet — N simulators with different model sets (each holding
#   one model at a time, 3 s loads), named gpu-1..gpu-N, behind one sluice (--backend ...);
#   Ollama is not looked for.
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
fleet=0
extra=()
while (($# > 0)); do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --ollama) ollama=${2%/}; shift 2 ;;
    --fleet) fleet=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run: unknown argument $1 (see scripts/run.sh --help)" >&2; exit 64 ;;
  esac
done

if ! [[ "$fleet" =~ ^[0-9]+$ ]] || ((fleet > 8)); then
  echo "run: --fleet takes a number of simulators from 1 to 8, not $fleet" >&2
  exit 64
fi

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
sim_pids=()
sluice_pid=""
cleanup() {
  local status=$?
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not orphan the children; drain_timeout bounds the wait
  if [[ -n "$sluice_pid" ]] && kill -0 "$sluice_pid" 2>/dev/null; then
    kill -TERM "$sluice_pid" 2>/dev/null || true
    wait "$sluice_pid" 2>/dev/null || true
  fi
  local pid
  for pid in "${sim_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "run: stopping the simulator (pid $pid)" >&2
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
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

# start_sim NAME ARGS...: starts one simulator in its own session (a Ctrl-C on the terminal
# reaches this script only; cleanup stops the children in order: sluice drains first, then the
# simulators go) and sets sim_url.
start_sim() {
  local name=$1 pid
  shift
  setsid "$sim_bin" --listen 127.0.0.1:0 "$@" >"$workdir/$name.out" 2>"$workdir/$name.err" &
  pid=$!
  sim_pids+=("$pid")
  if ! sim_url=$(wait_for_line "$workdir/$name.out" "listening on " "$pid"); then
    echo "run: the simulator $name did not start:" >&2
    cat "$workdir/$name.err" >&2
    exit 1
  fi
  sim_started="$sim_url (sluice-sim $*, pid $pid)"
}

backends=()
fleet_desc=()
if ((fleet > 0)); then
  # Each backend serves two of four models and holds one at a time: placement by model, and
  # the cost of a load, are visible in X-Sluice-Backend and /admin/state.
  models=(mistral:latest llama3.1:8b qwen2.5:7b gemma2:9b)
  read -r -a sim_args <<<"${SLUICE_SIM_ARGS:---parallel 2}"
  for ((i = 0; i < fleet; i++)); do
    served="${models[$((i % 4))]},${models[$(((i + 1) % 4))]}"
    start_sim "gpu-$((i + 1))" "${sim_args[@]}" --models "$served" --max-loaded 1 --load-time 3s
    echo "run: started gpu-$((i + 1)) at $sim_started" >&2
    backends+=(--backend "gpu-$((i + 1))=$sim_url,2")
    fleet_desc+=("gpu-$((i + 1))=$sim_url ($served)")
  done
  upstream="a fleet of $fleet simulators"
elif version=$(curl -fsS -m 2 "$ollama/api/version" 2>/dev/null); then
  upstream=$ollama
  echo "run: found Ollama at $ollama ($version); sluice will proxy to it" >&2
else
  read -r -a sim_args <<<"${SLUICE_SIM_ARGS:---parallel 2}"
  start_sim sim "${sim_args[@]}"
  echo "run: no Ollama at $ollama; starting the bundled GPU simulator at $sim_started" >&2
  upstream=$sim_url
fi

if ((fleet > 0)); then
  args=(--config "$config" "${backends[@]}")
else
  args=(--config "$config" --upstream "$upstream")
fi
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
if ((fleet > 0)); then
  echo "run: the fleet: ${fleet_desc[*]}" >&2
  echo "run: models: ${models[*]:0:$((fleet + 1 > 4 ? 4 : fleet + 1))} (curl -i shows X-Sluice-Backend," \
    "the backend that answered; the first request for a model not resident waits its load)" >&2
fi
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
