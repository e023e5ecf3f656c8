#!/usr/bin/env bash
# Soak test: sluice-sim (time-scaled, optional random faults) and sluice on loopback, mixed
# traffic from sluice-soak for a while, then the checks (nothing crashed, no slot leaked, every
# request accounted for in the access log and the metrics, RSS flat after warm-up).
#
# Usage: scripts/soak.sh [--minutes N | --seconds N] [--fault-rate F] [--clients N] [--seed S]
#                        [--build-dir DIR] [--no-build] [--keep]
# Defaults: 1 minute, fault rate 0.05, 12 clients, seed 1, build dir build/. --keep leaves the
# run's directory (configs, logs) in place and prints where it is.
# Exit status: 0 when every check passed (and sluice then shut down cleanly on SIGTERM).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=60
fault_rate=0.05
clients=12
seed=1
build_dir="$root/build"
build=1
keep=0
while (($#)); do
  case "$1" in
    --minutes) seconds=$(($2 * 60)); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --fault-rate) fault_rate=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

if ((build)); then
  "$root/scripts/build.sh" "$build_dir" >/dev/null
fi
sim_bin="$build_dir/src/sim/sluice-sim"
sluice_bin="$build_dir/src/app/sluice"
driver_bin="$build_dir/tests/soak/sluice-soak"
for bin in "$sim_bin" "$sluice_bin" "$driver_bin"; do
  [[ -x "$bin" ]] || { echo "soak.sh: $bin not built" >&2; exit 1; }
done

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")
sim_pid=""
sluice_pid=""
cleanup() {
  [[ -n "$sluice_pid" ]] && kill "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null
  [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  if ((keep)); then echo "soak.sh: run directory kept: $run_dir" >&2; else rm -rf "$run_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 15 s for a line "PREFIXhttp://127.0.0.1:PORT" in FILE; prints PORT.
wait_port() {
  local file=$1 prefix=$2 pid=$3
  for _ in $(seq 150); do
    local line
    line=$(grep -m1 "^${prefix}http://127.0.0.1:" "$file" 2>/dev/null || true)
    if [[ -n "$line" ]]; then echo "${line##*:}"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "soak.sh: no '${prefix}' line from pid $pid; its output:" >&2
  cat "$file" "$file.err" >&2 2>/dev/null || true
  return 1
}

# The simulated GPU: 4 parallel streams, 20x faster than real time, random faults: every kind the
# simulator has, including hangs (sluice's header and idle timeouts end those).
fault_mix=error-500,refuse,reset-mid-stream,error-line,slow-first-token=2000
fault_mix+=,hang-before-headers,hang-mid-stream
"$sim_bin" --listen 127.0.0.1:0 --parallel 4 --time-scale 20 --fault-rate "$fault_rate" \
  --fault-mix "$fault_mix" --hang-limit 30 --seed "$seed" --log-level warn >"$run_dir/sim.out" 2>"$run_dir/sim.out.err" &
sim_pid=$!
sim_port=$(wait_port "$run_dir/sim.out" "listening on " "$sim_pid")

# sluice: short queue timeouts, a small per-user queue cap, tiers, JSON access log.
cat >"$run_dir/sluice.json" <<JSON
{
  "listen": "127.0.0.1:0",
  "admin_listen": "127.0.0.1:0",
  "upstream": {"url": "http://127.0.0.1:$sim_port", "connect_timeout": "1s",
               "header_timeout": "3s", "idle_timeout": "1s"},
  "scheduler": {
    "max_concurrency": 4,
    "max_queue": 64,
    "queue_timeout_cap": "3s",
    "max_inflight_duration": "20s",
    "per_key": {"label": "user", "max_queue": 2},
    "workloads": [
      {"name": "paid", "match": {"tier": "paid"}, "priority": 8, "queue_timeout": "3s"},
      {"name": "free", "match": {"tier": ["free", "open-source"]}, "priority": 1,
       "queue_timeout": "1500ms", "max_queue": 3}
    ],
    "default_workload": {"name": "default", "priority": 2, "queue_timeout": "2s"}
  },
  "limits": {"header_read_timeout": "5s", "keepalive_timeout": "10s"},
  "log": {"level": "info", "format": "json", "access_log": true}
}
JSON
"$sluice_bin" --config "$run_dir/sluice.json" >"$run_dir/sluice.out" 2>"$run_dir/sluice.log" &
sluice_pid=$!
cp /dev/null "$run_dir/sluice.out.err"
proxy_port=$(wait_port "$run_dir/sluice.out" "listening on " "$sluice_pid")
admin_port=$(wait_port "$run_dir/sluice.out" "admin listening on " "$sluice_pid")

# A sanitizer build's RSS grows with ASan's quarantine of freed memory: report it, do not judge it.
rss_flag=()
if grep -q '^SLUICE_SANITIZE:BOOL=ON' "$build_dir/CMakeCache.txt" 2>/dev/null; then
  rss_flag=(--no-rss-check)
fi

echo "soak.sh: ${seconds}s, $clients clients, fault rate $fault_rate, seed $seed;" \
  "sim :$sim_port, sluice :$proxy_port (admin :$admin_port, pid $sluice_pid), dir $run_dir" >&2
status=0
"$driver_bin" --proxy "http://127.0.0.1:$proxy_port" --admin "http://127.0.0.1:$admin_port" \
  --pid "$sluice_pid" --access-log "$run_dir/sluice.log" --seconds "$seconds" \
  --clients "$clients" --seed "$seed" "${rss_flag[@]}" || status=$?

# sluice must still be running, and must shut down cleanly.
if ! kill -0 "$sluice_pid" 2>/dev/null; then
  echo "FAIL: sluice died during the soak; last log lines:" >&2
  tail -20 "$run_dir/sluice.log" >&2
  status=1
else
  kill -TERM "$sluice_pid"
  sluice_status=0
  wait "$sluice_pid" || sluice_status=$?
  sluice_pid=""
  if ((sluice_status != 0)); then
    echo "FAIL: sluice exited $sluice_status after SIGTERM" >&2
    status=1
  else
    echo "ok:   sluice exited 0 after SIGTERM"
  fi
fi
# An error-level line is a bug (e.g. an exception that ended a session).
if grep -q '"level":"\(error\|critical\)"' "$run_dir/sluice.log"; then
  echo "FAIL: sluice logged errors:" >&2
  grep '"level":"\(error\|critical\)"' "$run_dir/sluice.log" | head -5 >&2
  status=1
fi
exit $status
