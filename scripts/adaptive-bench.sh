#!/usr/bin/env bash
# Issue 13's benchmark (docs/adaptive-concurrency.md): sluice with "max_concurrency": "auto"
# against static limits 1, 2, 4, 8 and 16, behind one sluice-sim whose --parallel is P (sluice is
# not told), for P in 1 2 4 8, under
#   steady  config/scenarios/adaptive-steady.json, Poisson, scaled to ~90 % of the capacity of
#           the simulator at P (its best total decode rate over <= P streams)
#   burst   config/scenarios/mistral-guide.json (250 prompts at once)
# and two live changes at P = 4 under the steady load, applied at --change-at simulated seconds
# by POST /sim/config: {"parallel": 2}, and {"external_streams": 4} (a second tenant decoding
# as many streams as sluice, half the GPU). Each arm runs on a fresh simulator and sluice; the
# arms of a group alternate their order from group to group. sluice-bench polls /admin/state
# for the limit in force (limits.csv) and keeps the simulator's records (upstream.csv); then
# `sluice-bench adaptive` makes one table per group and `sluice-bench limit-chart` the chart.
#
# Usage: scripts/adaptive-bench.sh [--time-scale F] [--parallel "1 2 4 8"] [--loads "steady burst"]
#                                  [--no-live] [--change-at S] [--out DIR] [--no-build]
#                                  [--arms "auto 1 2 4 8 16"] [--repeat N]
#   --time-scale F  simulator speed-up (default 50); durations are reported in wall time
#                   (--wall-durations) so sluice's clock and the timings agree
#   --arms LIST     the arms of each group ("auto" and static limits; default all six). With
#                   fewer than all six the tables and the chart are not made: for A/B runs
#   --repeat N      run each group N times (folders GROUP-1 ... GROUP-N), alternating orders
#   --out DIR       results (default results/adaptive-YYYYmmdd-HHMMSS): OUT/GROUP/ARM/ runs,
#                   OUT/GROUP.md tables, OUT/results.md all of them, OUT/limits.svg
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

scale=50
parallels="1 2 4 8"
loads="steady burst"
live=1
change_at=150
out=""
build=1
arms="auto 1 2 4 8 16"
repeat=1
while (($#)); do
  case "$1" in
    --time-scale) scale=$2; shift ;;
    --parallel) parallels=$2; shift ;;
    --loads) loads=$2; shift ;;
    --no-live) live=0 ;;
    --change-at) change_at=$2; shift ;;
    --out) out=$2; shift ;;
    --no-build) build=0 ;;
    --arms) arms=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "adaptive-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out=${out:-"$root/results/adaptive-$(date +%Y%m%d-%H%M%S)"}
build_dir=${SLUICE_BUILD_DIR:-"$root/build"}
if ((build)); then
  echo "== build ($build_dir)" >&2
  "$root/scripts/build.sh" "$build_dir" -DCMAKE_BUILD_TYPE=Release >"${TMPDIR:-/tmp}/sluice-adaptive-build.log" 2>&1 ||
    { cat "${TMPDIR:-/tmp}/sluice-adaptive-build.log" >&2; exit 1; }
fi
sim_bin="$build_dir/src/sim/sluice-sim"
bench_bin="$build_dir/src/bench/sluice-bench"
sluice_bin="$build_dir/src/app/sluice"
for b in "$sim_bin" "$bench_bin" "$sluice_bin"; do
  [[ -x "$b" ]] || { echo "adaptive-bench: $b was not built" >&2; exit 1; }
done
mkdir -p "$out/logs"
logs="$out/logs"

pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# start NAME PATTERN CMD...: starts a server, waits for the line "PATTERN http://127.0.0.1:PORT"
# on its stdout; sets $port.
start() {
  local name=$1 pattern=$2; shift 2
  : >"$logs/$name.out"
  "$@" >"$logs/$name.out" 2>"$logs/$name.err" &
  local pid=$! i
  pids+=("$pid")
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n "s|^$pattern http://127\.0\.0\.1:\([0-9]*\)\$|\1|p" "$logs/$name.out" | head -1 || true)
    [[ -n "$port" ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "adaptive-bench: $name did not start:" >&2
  cat "$logs/$name.err" >&2
  exit 1
}

# The simulator's default decode scaling (1:1,2:0.7,4:0.37,8:0.18) as total throughput T(n) in
# streams' worth: the best the GPU does with at most P streams, for the steady load's rate.
best_total() {
  case "$1" in 1) echo 1 ;; 2) echo 1.4 ;; *) echo 1.48 ;; esac
}

# write_config FILE SIM_PORT LIMIT: sluice in front of the simulator with LIMIT (auto or N), the
# workloads of config/experiment/after.json, an admin listener for /admin/state.
write_config() {
  local limit=$1 file=$2 sim_port=$3 upstream static=""
  # A single upstream's fixed limit is scheduler.max_concurrency; "auto" goes on the upstream.
  if [[ "$limit" == auto ]]; then
    upstream="{ \"url\": \"http://127.0.0.1:$sim_port\", \"max_concurrency\": \"auto\" }"
  else
    upstream="{ \"url\": \"http://127.0.0.1:$sim_port\" }"
    static="\"max_concurrency\": $limit,"
  fi
  cat >"$file" <<JSON
{ "admin_listen": "127.0.0.1:0",
  "upstream": $upstream,
  "scheduler": { $static
    "max_queue": 100000,
    "queue_timeout_cap": "240s",
    "workloads": [
      { "name": "paid", "match": { "tier": "paid" }, "priority": 8, "queue_timeout": "240s" },
      { "name": "open-source", "match": { "tier": ["open-source", "free"] }, "priority": 1,
        "queue_timeout": "240s" }
    ],
    "default_workload": { "name": "default", "priority": 1, "queue_timeout": "240s" }
  },
  "log": { "level": "info", "access_log": false } }
JSON
}

# arm GROUP P LOAD LIMIT [LIVE_CHANGE]: one run on a fresh simulator and sluice.
arm() {
  local group=$1 parallel=$2 load=$3 limit=$4 change=${5:-}
  local label scenario extra=() name
  [[ "$limit" == auto ]] && label=auto || label="static-$limit"
  name="$group-$label"
  start "sim-$name" "listening on" "$sim_bin" --listen 127.0.0.1:0 --parallel "$parallel" \
    --time-scale "$scale" --wall-durations --seed 1 --log-level warn
  local sim_port=$port
  write_config "$limit" "$logs/sluice-$name.json" "$sim_port"
  start "sluice-$name" "listening on" "$sluice_bin" --config "$logs/sluice-$name.json" --listen 127.0.0.1:0
  local proxy_port=$port admin_port
  admin_port=$(sed -n 's|^admin listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$logs/sluice-$name.out" | head -1)
  case "$load" in
    steady)
      scenario="$root/config/scenarios/adaptive-steady.json"
      # 90 % of capacity: T x 60 tokens/s / 90 tokens per request, over the file's 1 request/s.
      extra+=(--rate-scale "$(awk -v t="$(best_total "$parallel")" 'BEGIN { printf "%.4f", 0.9 * t * 60 / 90 }')") ;;
    burst) scenario="$root/config/scenarios/mistral-guide.json" ;;
  esac
  [[ -n "$change" ]] && extra+=(--sim-config-at "$change")
  "$bench_bin" run --scenario "$scenario" --target "http://127.0.0.1:$proxy_port" \
    --sim-stats "http://127.0.0.1:$sim_port" --watch-state "http://127.0.0.1:$admin_port" \
    --label "$label" --out "$out/$group/$label" --no-progress "${extra[@]}" >/dev/null ||
    echo "adaptive-bench: $group/$label had failed requests" >&2
  grep -hE " concurrency( [0-9]+ -> |: )" "$logs/sluice-$name.err" >"$out/$group/$label/limit-changes.log" || true
  stop_all
}

read -r -a arms_forward <<<"$arms"
arms_backward=()
for ((i = ${#arms_forward[@]} - 1; i >= 0; i--)); do arms_backward+=("${arms_forward[i]}"); done
flip=0
# group NAME P LOAD [LIVE_CHANGE]: every arm, in alternating order.
group() {
  local name=$1 parallel=$2 load=$3 change=${4:-} limit
  local -a order
  if ((flip)); then order=("${arms_backward[@]}"); else order=("${arms_forward[@]}"); fi
  flip=$((1 - flip))
  echo "== $name: sluice-sim --parallel $parallel, $load load, arms ${order[*]}" >&2
  for limit in "${order[@]}"; do arm "$name" "$parallel" "$load" "$limit" "$change"; done
}
# repeated NAME ARGS...: the group, --repeat times (NAME-1 ... when more than once).
repeated() {
  local name=$1 r; shift
  if ((repeat == 1)); then group "$name" "$@"; groups+=("$name"); return; fi
  for ((r = 1; r <= repeat; r++)); do group "$name-$r" "$@"; groups+=("$name-$r"); done
}

runs_of() {  # the arm folders of a group, in the table's order
  local g=$1 a
  for a in auto static-1 static-2 static-4 static-8 static-16; do echo "$out/$g/$a"; done
}

t0=$(date +%s)
groups=()
for load in $loads; do
  for p in $parallels; do repeated "P$p-$load" "$p" "$load"; done
done
live_groups=()
if ((live)); then
  n=${#groups[@]}
  repeated P4-live-parallel 4 steady "$change_at={\"parallel\":2}"
  repeated P4-live-tenant 4 steady "$change_at={\"external_streams\":4}"
  live_groups=("${groups[@]:n}")
  groups=("${groups[@]:0:n}")
fi
if [[ "$arms" != "auto 1 2 4 8 16" ]]; then
  echo "== $(($(date +%s) - t0)) s; runs in $out (arms $arms: no tables, see each run's summary)" >&2
  exit 0
fi

: >"$out/results.md"
panels=()
for g in "${groups[@]}"; do
  # shellcheck disable=SC2046
  "$bench_bin" adaptive --out "$out/$g.md" --title "$g" $(runs_of "$g") >/dev/null
  cat "$out/$g.md" >>"$out/results.md"
  panels+=("$g=$out/$g/auto")
done
after=$(awk -v c="$change_at" 'BEGIN { print c + 30 }')
for g in "${live_groups[@]}"; do
  # shellcheck disable=SC2046
  "$bench_bin" adaptive --out "$out/$g.md" --title "$g (from $after s: 30 s after the change at $change_at s)" \
    --from "$after" --converge-from "$change_at" --max-converge 30 $(runs_of "$g") >/dev/null
  cat "$out/$g.md" >>"$out/results.md"
  panels+=("$g@$change_at=$out/$g/auto")
done
"$bench_bin" limit-chart --out "$out/limits.svg" \
  --title "sluice's auto limit over time (sluice-sim at ${scale}x)" "${panels[@]}"
echo "== $(($(date +%s) - t0)) s; results in $out (results.md, limits.svg)" >&2
cat "$out/results.md"
