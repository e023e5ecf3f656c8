#!/usr/bin/env bash
# Replays the experiment sluice was conceived from (docs/experiment.md): Mistral on one GPU
# (sluice-sim with its calibrated defaults, one request at a time like Ollama's default
# OLLAMA_NUM_PARALLEL=1), a burst of prompts from paid and open-source users, run
#   before   straight to the GPU (no scheduling)
#   fifo     through sluice, one FIFO queue, same concurrency limit
#   after    through sluice, paid priority 8 / open-source 1, fair between users
#   strict   through sluice, paid in a higher strict band (scenarios with a "strict" target)
#   haproxy  through HAProxy: server maxconn, set-priority-class from X-Tier, timeout queue
#            (skipped with a note when haproxy is not installed; scripts/setup.sh --bench)
# and prints the comparison table and the scenario's targets. A scenario with a "fleet" object
# (config/scenarios/fleet.json) is run against several simulators instead, five ways:
#   direct               each user bound to one backend, no proxy
#   sluice               sluice fronting the backends, model-aware placement
#   sluice-least-loaded  the same, placement by load only
#   haproxy-leastconn    HAProxy balance leastconn, server maxconn = the backends' parallelism
#   haproxy-roundrobin   the same with balance roundrobin
# (the sluice runs are skipped with a note when this sluice does not accept a fleet config).
# Everything goes to one folder:
#   OUT/SCENARIO/RUN/{requests.csv,summary.json,summary.md,chart.svg}  one run
#   OUT/SCENARIO/{comparison.md,comparison.json,chart.svg}            the runs side by side
#
# Usage: scripts/experiment.sh [--quick] [--scenario NAME]... [--time-scale F]
#                              [--max-concurrency N] [--out DIR] [--no-haproxy]
#   --quick            simulator 100x faster than real time: the whole thing takes < 1 minute
#   (default)          10x faster: about 5 minutes, slow enough to watch the progress lines
#   --scenario NAME    config/scenarios/NAME.json (repeatable; default: mistral-guide and
#                      noisy-neighbour; fleet and fleet-slow run only when named)
#   --max-concurrency  what sluice admits at once and HAProxy's server maxconn (default 2;
#                      a fleet scenario sets its own per backend)
#   --out DIR          results folder (default results/experiment-YYYYmmdd-HHMMSS)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

quick=0
scale=""
concurrency=2
out=""
use_haproxy=1
scenarios=()
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --time-scale) scale=$2; shift ;;
    --max-concurrency) concurrency=$2; shift ;;
    --scenario) scenarios+=("$2"); shift ;;
    --out) out=$2; shift ;;
    --no-haproxy) use_haproxy=0 ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "experiment: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((${#scenarios[@]})) || scenarios=(mistral-guide noisy-neighbour)
[[ -n "$scale" ]] || { ((quick)) && scale=100 || scale=10; }
[[ "$concurrency" =~ ^[1-9][0-9]*$ ]] || { echo "experiment: --max-concurrency must be a positive integer" >&2; exit 2; }
out=${out:-"$root/results/experiment-$(date +%Y%m%d-%H%M%S)"}
for s in "${scenarios[@]}"; do
  [[ -f "$root/config/scenarios/$s.json" ]] || { echo "experiment: no scenario config/scenarios/$s.json" >&2; exit 2; }
done

build_dir=${SLUICE_BUILD_DIR:-"$root/build"}
echo "== build ($build_dir)" >&2
"$root/scripts/build.sh" "$build_dir" -DCMAKE_BUILD_TYPE=Release >"${TMPDIR:-/tmp}/sluice-experiment-build.log" 2>&1 ||
  { cat "${TMPDIR:-/tmp}/sluice-experiment-build.log" >&2; exit 1; }
sim_bin="$build_dir/src/sim/sluice-sim"
bench_bin="$build_dir/src/bench/sluice-bench"
sluice_bin="$build_dir/src/app/sluice"
for b in "$sim_bin" "$bench_bin"; do
  [[ -x "$b" ]] || { echo "experiment: $b was not built" >&2; exit 1; }
done
have_sluice=1
[[ -x "$sluice_bin" ]] || have_sluice=0
have_haproxy=0
if ((use_haproxy)) && command -v haproxy >/dev/null; then have_haproxy=1; fi

mkdir -p "$out"
logs="$out/logs"
mkdir -p "$logs"

# Processes this script started; stopped on every exit path.
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# try_start NAME CMD... : starts a server that prints "listening on http://127.0.0.1:PORT";
# sets $port, appends its pid to pids; returns 1 if it exits (or stays silent) instead.
try_start() {
  local name=$1; shift
  local log="$logs/$name"
  : >"$log.out"
  "$@" >"$log.out" 2>"$log.err" &
  local pid=$!
  pids+=("$pid")
  local i
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$log.out" | head -1 || true)
    [[ -n "$port" ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# start NAME CMD... : try_start, or stop the experiment with the server's error output.
start() {
  local name=$1
  try_start "$@" && return 0
  echo "experiment: $name did not start:" >&2
  cat "$logs/$name.err" >&2
  exit 1
}

# A port below the kernel's ephemeral range (32768+ on Linux), so no outgoing connection holds
# it, with nothing listening on it.
free_port() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "experiment: no free port found" >&2
  return 1
}

# HAProxy as its users would configure it for this job: one server with maxconn = the GPU's
# parallelism, paid requests in a better priority class (lower is served first), a queue
# timeout as long as sluice's, and long client/server timeouts for streamed answers.
# start_haproxy SIM_PORT NAME [BACKEND_LINES]: BACKEND_LINES replace the one-server backend
# (a fleet: "balance ..." and one "server" line per simulator).
start_haproxy() {
  local sim_port=$1 cfg="$logs/haproxy-$2.cfg" listen_port attempt i pid
  local backend_lines=${3:-"  server sim 127.0.0.1:$sim_port maxconn $concurrency"}
  for ((attempt = 0; attempt < 5; attempt++)); do
    listen_port=$(free_port) || return 1
    cat >"$cfg" <<EOF
global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 3600s
  timeout server 3600s
  timeout queue 240s
frontend bench
  bind 127.0.0.1:$listen_port
  http-request set-priority-class int(-10) if { req.hdr(X-Tier) -m str paid }
  default_backend gpu
backend gpu
$backend_lines
EOF
    haproxy -f "$cfg" -db >"$logs/haproxy-$2.out" 2>"$logs/haproxy-$2.err" &
    pid=$!
    pids+=("$pid")
    for ((i = 0; i < 100; i++)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null; then
        port=$listen_port
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break  # exited: most likely the port was taken; retry
      sleep 0.1
    done
  done
  echo "experiment: haproxy did not start:" >&2
  cat "$logs/haproxy-$2.err" >&2
  return 1
}

# run SCENARIO LABEL KIND [CONFIG]: one run on a fresh simulator.
run() {
  local scenario=$1 label=$2 kind=$3 config=${4:-}
  local file="$root/config/scenarios/$scenario.json"
  # --wall-durations: the final objects' durations agree with sluice's clock (what the ETA's
  # work throughput divides by, as in front of a real GPU); nothing else reads them.
  start "sim-$scenario-$label" "$sim_bin" --listen 127.0.0.1:0 --parallel 1 --time-scale "$scale" \
    --wall-durations --seed 1 --log-level warn
  local sim_port=$port target
  case "$kind" in
    direct) target="http://127.0.0.1:$sim_port" ;;
    sluice)
      start "sluice-$scenario-$label" "$sluice_bin" --config "$config" --listen 127.0.0.1:0 \
        --upstream "http://127.0.0.1:$sim_port" --max-concurrency "$concurrency"
      target="http://127.0.0.1:$port" ;;
    haproxy)
      if ! start_haproxy "$sim_port" "$scenario"; then
        echo "experiment: skipping $scenario/$label" >&2
        stop_all
        return 1
      fi
      target="http://127.0.0.1:$port" ;;
  esac
  "$bench_bin" run --scenario "$file" --target "$target" --sim-stats "http://127.0.0.1:$sim_port" \
    --label "$label" --out "$out/$scenario/$label" >/dev/null ||
    echo "experiment: $scenario/$label had failed requests (see $out/$scenario/$label/requests.csv)" >&2
  stop_all
}

# ---- fleets: several simulators, one run per way of fronting them ----

# write_fleet_config FILE PLACEMENT: sluice's config for the simulators in fleet_names and
# fleet_ports, each admitting fleet_parallel at once, with the workloads of
# config/experiment/after.json (free users in the open-source workload).
write_fleet_config() {
  local file=$1 placement=$2 i sep=""
  {
    echo '{ "admin_listen": "",'
    echo '  "upstreams": ['
    for i in "${!fleet_names[@]}"; do
      printf '%s    {"name": "%s", "url": "http://127.0.0.1:%s", "max_concurrency": %s}' \
        "$sep" "${fleet_names[$i]}" "${fleet_ports[$i]}" "$fleet_parallel"
      sep=$',\n'
    done
    echo ' ],'
    # sluice's defaults (load_time 5s, load_threshold 250ms), scaled like every other time in
    # the run: the simulators report durations in real time (--wall-durations), so sluice learns
    # what it would learn in front of GPUs that many times faster. Nothing is tuned here.
    printf '  "fleet": { "placement": "%s", "load_time": %s, "load_threshold": %s },\n' \
      "$placement" "$(awk -v s="$scale" 'BEGIN { v = int(5000 / s); print (v < 1 ? 1 : v) }')" \
      "$(awk -v s="$scale" 'BEGIN { v = int(250 / s); print (v < 1 ? 1 : v) }')"
    cat <<'EOF'
  "scheduler": {
    "max_queue": 100000,
    "queue_timeout_cap": "240s",
    "workloads": [
      { "name": "paid", "match": { "tier": "paid" }, "priority": 8, "queue_timeout": "240s" },
      { "name": "open-source", "match": { "tier": ["open-source", "free"] }, "priority": 1,
        "queue_timeout": "240s" }
    ],
    "default_workload": { "name": "default", "priority": 1, "queue_timeout": "240s" }
  },
  "log": { "level": "warn", "access_log": false } }
EOF
  } >"$file"
}

# run_fleet SCENARIO LABEL KIND: one run on a fresh set of simulators (the scenario's fleet).
# KIND: direct | model_aware | least_loaded (sluice's placements) | leastconn | roundrobin
# (HAProxy's balance). Returns 1 when the run could not be made (the reason is printed).
run_fleet() {
  local scenario=$1 label=$2 kind=$3
  local file="$root/config/scenarios/$scenario.json" i name
  local targets=() stats=()
  fleet_ports=()
  for i in "${!fleet_names[@]}"; do
    name=${fleet_names[$i]}
    # shellcheck disable=SC2086  # the flags are words without spaces (sluice-bench fleet)
    start "sim-$scenario-$label-$name" "$sim_bin" --listen 127.0.0.1:0 --time-scale "$scale" \
      --wall-durations --seed "$((i + 1))" --log-level warn ${fleet_flags[$i]}
    fleet_ports+=("$port")
    stats+=(--sim-stats "http://127.0.0.1:$port")
    targets+=(--target "http://127.0.0.1:$port")
  done
  case "$kind" in
    direct) ;;
    model_aware|least_loaded)
      local cfg="$logs/sluice-$scenario-$label.json"
      write_fleet_config "$cfg" "$kind"
      if ! try_start "sluice-$scenario-$label" "$sluice_bin" --config "$cfg" --listen 127.0.0.1:0; then
        echo "experiment: sluice did not accept the fleet config $cfg (a fleet needs sluice" \
          "with issue 12's upstreams); skipping $scenario/$label. sluice said:" >&2
        head -5 "$logs/sluice-$scenario-$label.err" | sed 's/^/  /' >&2
        stop_all
        return 1
      fi
      targets=(--target "http://127.0.0.1:$port") ;;
    leastconn|roundrobin)
      local lines="  balance $kind"
      for i in "${!fleet_names[@]}"; do
        lines+=$'\n'"  server ${fleet_names[$i]} 127.0.0.1:${fleet_ports[$i]} maxconn $fleet_parallel"
      done
      if ! start_haproxy "${fleet_ports[0]}" "$scenario-$label" "$lines"; then
        echo "experiment: skipping $scenario/$label" >&2
        stop_all
        return 1
      fi
      targets=(--target "http://127.0.0.1:$port") ;;
  esac
  "$bench_bin" run --scenario "$file" "${targets[@]}" "${stats[@]}" \
    --label "$label" --out "$out/$scenario/$label" >/dev/null ||
    echo "experiment: $scenario/$label had failed requests (see $out/$scenario/$label/requests.csv)" >&2
  stop_all
}

# experiment_fleet SCENARIO: the five runs and their comparison (ratios to haproxy-leastconn).
experiment_fleet() {
  local scenario=$1 line
  fleet_names=()
  fleet_flags=()
  while read -r line; do
    fleet_names+=("${line%% *}")
    fleet_flags+=("${line#* }")
  done < <("$bench_bin" fleet "$root/config/scenarios/$scenario.json")
  fleet_parallel=$(sed -n 's/.*--parallel \([0-9]*\).*/\1/p' <<<"${fleet_flags[0]}")
  echo "== $scenario: ${#fleet_names[@]} simulators (${fleet_names[*]}) at ${scale}x, each" \
    "generating $fleet_parallel at once; sluice and HAProxy admit $fleet_parallel per backend" >&2
  runs=()
  run_fleet "$scenario" direct direct
  runs+=("$out/$scenario/direct")
  if ((have_sluice)); then
    if run_fleet "$scenario" sluice model_aware; then runs+=("$out/$scenario/sluice"); fi
    if run_fleet "$scenario" sluice-least-loaded least_loaded; then
      runs+=("$out/$scenario/sluice-least-loaded")
    fi
  else
    echo "experiment: $sluice_bin is not built; skipping the runs through sluice" >&2
  fi
  if ((have_haproxy)); then
    if run_fleet "$scenario" haproxy-leastconn leastconn; then
      runs+=("$out/$scenario/haproxy-leastconn")
    fi
    if run_fleet "$scenario" haproxy-roundrobin roundrobin; then
      runs+=("$out/$scenario/haproxy-roundrobin")
    fi
  else
    echo "experiment: haproxy not installed (scripts/setup.sh --bench) or --no-haproxy;" \
      "skipping the HAProxy runs" >&2
  fi
  echo >&2
  "$bench_bin" report --out "$out/$scenario" --scenario "$root/config/scenarios/$scenario.json" \
    --baseline haproxy-leastconn \
    --title "$scenario: latency per request (simulators ${scale}x real time)" "${runs[@]}"
  echo
}

echo "== experiment: scenarios ${scenarios[*]}; simulator --parallel 1 --time-scale $scale;" \
  "sluice/HAProxy admit $concurrency at once; results in $out" >&2
for scenario in "${scenarios[@]}"; do
  if [[ -n "$("$bench_bin" fleet "$root/config/scenarios/$scenario.json")" ]]; then
    experiment_fleet "$scenario"
    continue
  fi
  runs=()
  run "$scenario" before direct
  runs+=("$out/$scenario/before")
  if ((have_sluice)); then
    run "$scenario" fifo sluice "$root/config/experiment/fifo.json"
    run "$scenario" after sluice "$root/config/experiment/after.json"
    runs+=("$out/$scenario/fifo" "$out/$scenario/after")
    if grep -q '"run": *"strict"' "$root/config/scenarios/$scenario.json"; then
      run "$scenario" strict sluice "$root/config/experiment/strict.json"
      runs+=("$out/$scenario/strict")
    fi
  else
    echo "experiment: $sluice_bin is not built; skipping the runs through sluice" >&2
  fi
  if ((have_haproxy)); then
    if run "$scenario" haproxy haproxy; then runs+=("$out/$scenario/haproxy"); fi
  else
    echo "experiment: haproxy not installed (scripts/setup.sh --bench) or --no-haproxy; skipping that run" >&2
  fi
  echo >&2
  "$bench_bin" report --out "$out/$scenario" --scenario "$root/config/scenarios/$scenario.json" \
    --baseline before --title "$scenario: latency per request (simulator ${scale}x real time)" \
    "${runs[@]}"
  echo
done
echo "== results in $out (open */chart.svg in a browser)" >&2
