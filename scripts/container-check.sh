#!/usr/bin/env bash
# Builds the container image and checks, on a real Docker engine, what docs/operations.md
# ("Containers") promises: a generate request through sluice to a sluice-sim container, a
# `docker run IMAGE --listen ...` override, a mounted config with "admin_listen": "" (admin really
# off, the health check still passing), `docker stop` with a stream in flight (exit 0 within the
# stop timeout: a short stream completes, a stream longer than drain_timeout is cut at it), the
# HEALTHCHECK turning healthy, the numeric UID/GID, stripped binaries, and the image size.
# Not part of CI (it needs a Docker engine and rebuilds the project inside the image).
#
# Usage: scripts/container-check.sh [--image NAME] [--no-build] [--compare-unstripped] [--compose]
#                                   [--build-arg ARG]...
#   --image NAME          tag to build and check (default sluice:check)
#   --no-build            check an existing image
#   --compare-unstripped  also build the same image with unstripped binaries (reusing the cached
#                         build stage) and report both sizes
#   --compose             also run deploy/compose.yaml's sim profile (tags the image sluice:latest,
#                         which the compose file names; needs 127.0.0.1:11435-11436 free)
#   --build-arg ARG       passed to docker build as it is, e.g. --build-arg --network=host
# Environment: DOCKER (default docker). The base images named by the Dockerfile's FROM lines
# (debian:12, debian:12-slim) must be pullable or already present.
# Everything it starts is named sluice-check-* and removed at the end. Exit status: 0 when every
# check held; 1 otherwise, after printing each failed check as "FAIL: ...".
set -Eeuo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
docker=${DOCKER:-docker}
image=sluice:check
build=1
compare=0
compose=0
build_args=()
while (($#)); do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --compare-unstripped) compare=1; shift ;;
    --compose) compose=1; shift ;;
    --build-arg) build_args+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "container-check: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

failures=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
now() { echo "$EPOCHREALTIME"; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-container-check.XXXXXX")
containers=()
network=""
compose_cmd=()
sim="" proxy="" listen="" noadmin=""
cleanup() {
  local status=$?
  trap - EXIT
  if ((${#containers[@]})); then "$docker" rm -f "${containers[@]}" >/dev/null 2>&1 || true; fi
  if ((${#compose_cmd[@]})); then "${compose_cmd[@]}" down -v >/dev/null 2>&1 || true; fi
  if [[ -n "$network" ]]; then "$docker" network rm "$network" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A step that the checks depend on failed (set -e): say where, loudly, before exiting.
trap 'echo "FAIL: container-check aborted at line $LINENO: $BASH_COMMAND" >&2' ERR

"$docker" info >/dev/null 2>&1 || { echo "container-check: no Docker engine answers ($docker info)" >&2; exit 1; }

# --- build ---------------------------------------------------------------------------------------
if ((build)); then
  echo "container-check: docker build -t $image $root (compiles and runs the tests; takes a while)"
  start=$(now)
  if ! "$docker" build "${build_args[@]}" -t "$image" "$root" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    echo "FAIL: docker build (log above)" >&2
    exit 1
  fi
  pass "docker build took $(seconds_since "$start") s (cached layers are reused)"
fi
size=$("$docker" image inspect -f '{{.Size}}' "$image")
echo "info: image $image: $(mib "$size")"
if ((compare)); then
  # The same Dockerfile without --strip: every layer before it comes from the build cache.
  sed 's/install -D --strip /install -D /g' "$root/Dockerfile" >"$work/Dockerfile.unstripped"
  if "$docker" build "${build_args[@]}" -f "$work/Dockerfile.unstripped" -t "$image-unstripped" \
       "$root" >"$work/build-unstripped.log" 2>&1; then
    unstripped=$("$docker" image inspect -f '{{.Size}}' "$image-unstripped")
    echo "info: unstripped $(mib "$unstripped"), stripped $(mib "$size")"
    check "stripping makes the image smaller" test "$size" -lt "$unstripped"
    "$docker" rmi "$image-unstripped" >/dev/null
  else
    tail -20 "$work/build-unstripped.log" >&2
    fail "building the unstripped comparison image"
  fi
fi

# --- the image's settings ------------------------------------------------------------------------
inspect() { "$docker" image inspect -f "$1" "$image"; }
check "USER is numeric 10001:10001" test "$(inspect '{{.Config.User}}')" = "10001:10001"
check "ENTRYPOINT is sluice with the image config" \
  test "$(inspect '{{json .Config.Entrypoint}}')" = '["sluice","--config","/etc/sluice/sluice.json"]'
check "STOPSIGNAL is SIGTERM" test "$(inspect '{{.Config.StopSignal}}')" = "SIGTERM"
check "a HEALTHCHECK runs sluice healthcheck" \
  grep -q healthcheck <<<"$(inspect '{{json .Config.Healthcheck}}')"
id_out=$("$docker" run --rm --entrypoint id "$image")
echo "info: id inside: $id_out"
check "id inside shows uid=10001 gid=10001" grep -q '^uid=10001(sluice) gid=10001(sluice)' <<<"$id_out"
check "the image config is valid" "$docker" run --rm "$image" --check-config /etc/sluice/sluice.json
copy=$("$docker" create "$image")
containers+=("$copy")
for bin in sluice sluice-sim; do
  "$docker" cp "$copy:/usr/local/bin/$bin" "$work/$bin"
  echo "info: /usr/local/bin/$bin: $(mib "$(stat -c %s "$work/$bin")")"
  if command -v file >/dev/null; then
    check "$bin is stripped" grep -q ', stripped' <<<"$(file "$work/$bin")"
  fi
done

# --- a simulated GPU and sluice in front of it ---------------------------------------------------
network=sluice-check-$$
"$docker" network create "$network" >/dev/null
launch() {  # launch VAR NAME ARGS...: docker run -d on the check network; VAR = the container id
  local var=$1 name=$2 id
  shift 2
  id=$("$docker" run -d --name "$name-$$" --network "$network" "$@")
  containers+=("$id")
  printf -v "$var" '%s' "$id"
}
ip_of() { "$docker" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
host_port() { "$docker" port "$1" "$2" | head -1 | sed 's/.*://'; }
wait_log() {  # wait_log CONTAINER TEXT: up to 20 s for TEXT in its output
  for _ in $(seq 200); do
    "$docker" logs "$1" 2>&1 | grep -qF -- "$2" && return 0
    sleep 0.1
  done
  "$docker" logs "$1" >&2 2>&1 || true
  return 1
}
generate() {  # generate PORT NUM_PREDICT [CURL ARGS...]: a streamed /api/generate as paid user alice
  local port=$1 n=$2; shift 2
  curl -sS -N -D "$work/headers.$port.$n" "http://127.0.0.1:$port/api/generate" \
    -H 'X-User-Id: alice' -H 'X-Tier: paid' \
    -d "{\"model\": \"mistral\", \"prompt\": \"Why is the sky blue?\", \"options\": {\"num_predict\": $n}}" "$@"
}
ends_done() { tail -1 "$1" | grep -q '"done":true'; }

# sluice-sim from the same image: 60 tokens/s per stream, so num_predict N streams for N/60 s.
launch sim sluice-check-sim --no-healthcheck --entrypoint sluice-sim "$image" \
  --listen 0.0.0.0:11434 --parallel 4 --log-level warn
wait_log "$sim" "listening on" || fail "sluice-sim started"
sim_ip=$(ip_of "$sim")
upstream=http://$sim_ip:11434
echo "info: sluice-sim at $upstream"

# 1. As the docs say to run it, with the upstream given on the command line.
launch proxy sluice-check-proxy -p 127.0.0.1::11435 -p 127.0.0.1::11436 "$image" --upstream "$upstream"
# 2. --listen overridden by run arguments (the old ENTRYPOINT refused a second --listen).
launch listen sluice-check-listen -p 127.0.0.1::9000 "$image" --upstream "$upstream" \
  --listen 0.0.0.0:9000
# 3. A mounted config that disables the admin listener.
mkdir -p "$work/conf"
cat >"$work/conf/sluice.json" <<JSON
{
  "listen": "0.0.0.0:11435",
  "admin_listen": "",
  "upstream": {"url": "$upstream"},
  "shutdown": {"drain_timeout": "8s"}
}
JSON
chmod 0755 "$work/conf"
chmod 0644 "$work/conf/sluice.json"
launch noadmin sluice-check-noadmin -p 127.0.0.1::11435 \
  -v "$work/conf/sluice.json:/etc/sluice/sluice.json:ro" "$image"

for c in "$proxy" "$listen" "$noadmin"; do
  wait_log "$c" "listening on http://" || fail "$("$docker" inspect -f '{{.Name}}' "$c") started"
done

proxy_port=$(host_port "$proxy" 11435)
admin_port=$(host_port "$proxy" 11436)
if generate "$proxy_port" 5 -o "$work/gen.out"; then
  check "generate through sluice: 200" grep -q '^HTTP/1.1 200' "$work/headers.$proxy_port.5"
  check "generate through sluice: the paid workload" \
    grep -qi '^X-Sluice-Workload: paid' "$work/headers.$proxy_port.5"
  check "generate through sluice: the stream ends with done:true" ends_done "$work/gen.out"
else
  fail "generate through sluice (curl failed)"
fi
check "/readyz through the published admin port: 200 (sluice-sim reachable)" \
  curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz"

check "--listen 0.0.0.0:9000 as a run argument: sluice listens there" \
  wait_log "$listen" "listening on http://0.0.0.0:9000"
listen_port=$(host_port "$listen" 9000)
check "--listen override: a request on port 9000 is served" \
  generate "$listen_port" 3 -o "$work/gen9000.out"
check "--listen override: the admin listener stays on 11436" \
  wait_log "$listen" "admin listening on http://0.0.0.0:11436"

noadmin_port=$(host_port "$noadmin" 11435)
check "mounted config: a request is served" generate "$noadmin_port" 3 -o "$work/gen-noadmin.out"
sleep 0.5
if "$docker" logs "$noadmin" 2>&1 | grep -q "admin listening"; then
  fail "mounted config with admin_listen \"\": sluice still started an admin listener"
else
  pass "mounted config with admin_listen \"\": no admin listener started"
fi
probe=$("$docker" exec "$noadmin" sluice healthcheck --admin-listen 127.0.0.1:11436 2>&1) && probe_rc=0 || probe_rc=$?
echo "info: inside, a probe of 127.0.0.1:11436: $probe"
check "mounted config: nothing listens on 11436 inside the container" \
  test "$probe_rc" = 1 -a -n "$(grep 'Connection refused' <<<"$probe")"
check "mounted config: nothing answers on the container's 11436 from outside" \
  bash -c "! curl -s -m 3 -o /dev/null http://$(ip_of "$noadmin"):11436/healthz"

# HEALTHCHECK: the first probe runs --interval (10 s) after the start.
wait_healthy() {
  local status=""
  for _ in $(seq 60); do
    status=$("$docker" inspect -f '{{.State.Health.Status}}' "$1")
    [[ "$status" == healthy ]] && return 0
    sleep 1
  done
  echo "health of $1: $status; $("$docker" inspect -f '{{json .State.Health}}' "$1")" >&2
  return 1
}
start=$(now)
for c in "$proxy" "$listen" "$noadmin"; do
  name=$("$docker" inspect -f '{{.Name}}' "$c")
  if wait_healthy "$c"; then
    last=$("$docker" inspect -f '{{with (index .State.Health.Log 0)}}{{.Output}}{{end}}' "$c" | head -1)
    pass "HEALTHCHECK of ${name#/}: healthy ($last)"
  else
    fail "HEALTHCHECK of ${name#/}: not healthy after 60 s"
  fi
done
echo "info: all three healthy $(seconds_since "$start") s after the requests above"

# --- docker stop with a stream in flight ---------------------------------------------------------
# stop_with_stream CONTAINER PORT NUM_PREDICT: starts a stream, waits for its first bytes, runs
# `docker stop`; sets stop_seconds, exit_code, and leaves the body in $work/stream.NUM_PREDICT.
stop_with_stream() {
  local c=$1 port=$2 n=$3 out=$work/stream.$3
  generate "$port" "$n" -o "$out" || true &  # a cut stream is a curl error
  local curl_pid=$!
  for _ in $(seq 100); do [[ -s "$out" ]] && break; sleep 0.1; done
  [[ -s "$out" ]] || fail "the stream of $n tokens started"
  local start
  start=$(now)
  "$docker" stop "$c" >/dev/null
  stop_seconds=$(seconds_since "$start")
  wait "$curl_pid" || true
  exit_code=$("$docker" inspect -f '{{.State.ExitCode}}' "$c")
}
# A 3 s stream: it completes during the drain.
stop_with_stream "$proxy" "$proxy_port" 180
echo "info: docker stop with a 3 s stream in flight took $stop_seconds s; exit code $exit_code"
check "docker stop (short stream): exit code 0, not 137" test "$exit_code" = 0
check "docker stop (short stream): the stream completed (done:true)" ends_done "$work/stream.180"
check "docker stop (short stream): within docker's 10 s" awk -v s="$stop_seconds" 'BEGIN { exit !(s < 10) }'
check "docker stop (short stream): sluice logged the drain" \
  grep -q "every request finished" <<<"$("$docker" logs "$proxy" 2>&1)"
# A 20 s stream: cut at drain_timeout (8 s), still exit 0, before docker's SIGKILL at 10 s.
stop_with_stream "$listen" "$listen_port" 1200
echo "info: docker stop with a 20 s stream in flight took $stop_seconds s; exit code $exit_code"
check "docker stop (long stream): exit code 0, not 137" test "$exit_code" = 0
check "docker stop (long stream): cut at drain_timeout, before the SIGKILL" \
  awk -v s="$stop_seconds" 'BEGIN { exit !(s >= 7.5 && s < 10) }'
check "docker stop (long stream): the stream was cut (no done:true)" bash -c "! tail -1 '$work/stream.1200' | grep -q '\"done\":true'"
check "docker stop (long stream): sluice logged the cut" \
  grep -q "drain_timeout (8s) passed" <<<"$("$docker" logs "$listen" 2>&1)"

# --- deploy/compose.yaml, sim profile ------------------------------------------------------------
# The simulator first, then sluice pointed at its address (an IP: the compose file's own
# http://sim:11434 needs sluice to resolve upstream host names).
if ((compose)); then
  if "$docker" compose version >/dev/null 2>&1; then
    compose_cmd=("$docker" compose)
  elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
  else
    fail "--compose: neither 'docker compose' nor docker-compose is installed"
  fi
  if ((${#compose_cmd[@]})); then
    compose_cmd+=(-f "$root/deploy/compose.yaml" -p "sluice-check-$$" --profile sim)
    "$docker" tag "$image" sluice:latest
    if "${compose_cmd[@]}" up -d sim >"$work/compose.log" 2>&1; then
      sim_ip=$(ip_of "$("${compose_cmd[@]}" ps -q sim)")
      SLUICE_UPSTREAM=http://$sim_ip:11434 "${compose_cmd[@]}" up -d sluice sim >>"$work/compose.log" 2>&1 \
        || fail "compose: up sluice"
      sluice_c=$("${compose_cmd[@]}" ps -q sluice)
      wait_log "$sluice_c" "listening on http://" || fail "compose: sluice started"
      check "compose: generate on 127.0.0.1:11435" generate 11435 3 -o "$work/compose-gen.out"
      check "compose: /readyz on 127.0.0.1:11436" curl -fsS -o /dev/null http://127.0.0.1:11436/readyz
      check "compose: admin published on 127.0.0.1 only" \
        test "$("$docker" port "$sluice_c" 11436)" = "127.0.0.1:11436"
      check "compose: healthy" wait_healthy "$sluice_c"
      generate 11435 180 -o "$work/compose-stream.out" || true &
      curl_pid=$!
      sleep 0.7
      start=$(now)
      "${compose_cmd[@]}" stop sluice >>"$work/compose.log" 2>&1
      stop_seconds=$(seconds_since "$start")
      wait "$curl_pid" || true
      exit_code=$("$docker" inspect -f '{{.State.ExitCode}}' "$sluice_c")
      echo "info: compose stop with a 3 s stream in flight took $stop_seconds s; exit code $exit_code"
      check "compose stop: exit code 0" test "$exit_code" = 0
      check "compose stop: the stream completed" ends_done "$work/compose-stream.out"
    else
      cat "$work/compose.log" >&2
      fail "compose: up sim"
    fi
  fi
fi

if ((failures)); then
  echo "container-check: $failures check(s) FAILED" >&2
  exit 1
fi
echo "container-check: every check passed"
