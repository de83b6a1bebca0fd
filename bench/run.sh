#!/usr/bin/env bash
# bench/run.sh — measure streamgate against the same paced upstream reached directly and through
# nginx, side by side, in one run. See bench/README.md for what each scenario measures.
#
# Everything listens on 127.0.0.1 only; every loop is bounded in count and time. A full run takes
# about 5 minutes (plus the release builds). Environment knobs (defaults in brackets):
#   SKIP_BUILD=1           do not build [0]
#   PGO=0                  measure the plain `cargo build --release` gateway instead of the
#                          profile-guided one the container image ships (scripts/build-pgo.sh,
#                          ~10 minutes) [1]
#   GATEWAY_BIN=path       gateway binary [$TARGET_DIR/pgo/streamgate; with PGO=0
#                          $TARGET_DIR/release/streamgate]
#   BASELINE_BIN=path      a second gateway binary (say, built from an earlier commit), run in
#                          the same closed-loop rounds as row `baseline` (/v1/chat/completions),
#                          so that a change is compared within one run, not across runs [none]
#   BENCH_BIN_DIR=dir      where bench-upstream and loadgen are [$TARGET_DIR/release]
#   SCENARIOS="a b c"      subset of scenarios to run; d's rows are inside a, b and c [a b c]
#   SYSTEMS="direct gateway nginx"  subset of systems [all; nginx only if installed]
#   DURATION=8 WARMUP=2    seconds measured / warm-up per closed-loop run
#   ROUNDS=1               closed-loop rounds: each round runs every system once more, in an
#                          order that rotates; the report pairs each run with the same round's
#                          direct run and shows medians over rounds (a drift in the machine's
#                          speed then touches every system alike)
#   HOLD_STREAMS=5000 MAX_TEST_STREAMS=9000 HOLD_SECS=5
#   UP_PORT=18081 GW_PORT=18080 NGX_PORT=18082 UPSTREAM_THREADS=1 LOADGEN_THREADS=2 SUT_WORKERS=2
#   UPSTREAM_TIMER=fine    what paces bench-upstream's events: fine (a timerfd, to the
#                          microsecond) or tokio (whole milliseconds, as rounds before
#                          2026-12-07 measured) [fine]
#   UPSTREAM_ARGS="..."    more arguments for every bench-upstream, e.g. --head-with-first
#                          (its response head held until the first event, as the gateway
#                          holds its own) [none]
#   BODY_JSON=file         a JSON object merged into every closed-loop request body (loadgen
#                          --extra-json), e.g. bench/history-4k.json: a 21-message, 4 KB chat
#                          history in place of the one-line prompt [none]
#   PIN=1                  the load side (bench-upstream, loadgen) on CPU 0 and the system
#                          under test (gateway, nginx) on CPU 1, by `taskset`: each relay then
#                          has a core to itself, as in a deployment, instead of competing with
#                          the load side for both; use with SUT_WORKERS=1 [0]
#   OUT=dir                results directory [a new /tmp/streamgate-bench.XXXXXX]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PGO=${PGO:-1}
if [[ $PGO == 1 ]]; then
  GATEWAY_BIN=${GATEWAY_BIN:-$TARGET_DIR/pgo/streamgate}
else
  GATEWAY_BIN=${GATEWAY_BIN:-$TARGET_DIR/release/streamgate}
fi
BASELINE_BIN=${BASELINE_BIN:-}
BENCH_BIN_DIR=${BENCH_BIN_DIR:-$TARGET_DIR/release}
SCENARIOS=${SCENARIOS:-"a b c"}
SYSTEMS=${SYSTEMS:-"direct gateway nginx"}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
ROUND=1
HOLD_STREAMS=${HOLD_STREAMS:-5000}
MAX_TEST_STREAMS=${MAX_TEST_STREAMS:-9000}
HOLD_SECS=${HOLD_SECS:-5}
UP_PORT=${UP_PORT:-18081}
GW_PORT=${GW_PORT:-18080}
NGX_PORT=${NGX_PORT:-18082}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-1}
UPSTREAM_TIMER=${UPSTREAM_TIMER:-fine}
LOADGEN_THREADS=${LOADGEN_THREADS:-2}
# Worker threads of the gateway (WORKERS) and worker processes of nginx: the same for both.
SUT_WORKERS=${SUT_WORKERS:-2}
OUT=${OUT:-$(mktemp -d /tmp/streamgate-bench.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

UPSTREAM=$BENCH_BIN_DIR/bench-upstream
LG=$BENCH_BIN_DIR/loadgen
# Command prefixes that pin the load side and the system under test (PIN=1), else nothing.
LOAD_CPU=() SUT_CPU=()
if [[ ${PIN:-0} == 1 ]]; then LOAD_CPU=(taskset -c 0) SUT_CPU=(taskset -c 1); fi
CMDS=$OUT/commands.txt
: >"$CMDS"
FILES=()
STARTED=()
T_START=$(date +%s)

log() { printf '\n=== %s [%ss]\n' "$*" "$(($(date +%s) - T_START))" >&2; }
has_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }
has_scenario() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# Stop one process we started: SIGTERM, then SIGKILL after 5 s. Only ever our own pids.
stop_pid() {
  local pid=$1 i
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Forget it, so that cleanup never signals a recycled pid.
  local keep=() p
  for p in "${STARTED[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do
    stop_pid "$pid"
  done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_http URL [tries]: until the URL answers 2xx (tries × 0.1 s at most).
wait_http() {
  local url=$1 tries=${2:-100} i code
  for ((i = 0; i < tries; i++)); do
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" || true)
    [[ "$code" == 2* ]] && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- build
if [[ "${SKIP_BUILD:-0}" != 1 && $PGO == 1 ]]; then
  log "building release: bench crate, gateway profile-guided (scripts/build-pgo.sh)"
  "$ROOT/scripts/build-pgo.sh"
elif [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building release (gateway and bench crate)"
  (cd "$ROOT" && cargo build --release -p streamgate -p streamgate-bench)
fi
for b in "$UPSTREAM" "$LG"; do
  [[ -x "$b" ]] || { echo "missing $b (build bench/ first)" >&2; exit 1; }
done

# Both ends of every stream need descriptors: raise the soft limit for everything started here.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Which binary ran. With SKIP_BUILD=1, target/pgo or target/release may hold the build of an
# experiment left there: a gateway binary older than a source file of the tree (by mtime, as
# cargo decides to rebuild) is named so on stderr and in the report.
binary_line() {
  local bin=$1 check=${2:-} newer=
  printf '%s (sha256 %s' "$bin" "$(sha256sum "$bin" | cut -c1-12)"
  if [[ -n $check ]]; then
    newer=$(cd "$ROOT" && find Cargo.toml Cargo.lock src vendor -type f -newer "$bin" -print -quit 2>/dev/null) || true
  fi
  [[ -z $newer ]] || printf '; OLDER THAN %s: not a build of this tree' "$newer"
  printf ')'
}

HAVE_GATEWAY=0
if has_system gateway && [[ -x "$GATEWAY_BIN" ]]; then HAVE_GATEWAY=1; fi
if [[ $HAVE_GATEWAY == 1 ]]; then
  GATEWAY_LINE=$(binary_line "$GATEWAY_BIN" check)
  [[ $GATEWAY_LINE != *"OLDER THAN"* ]] || echo "note: gateway $GATEWAY_LINE" >&2
else
  GATEWAY_LINE="$GATEWAY_BIN (not run)"
fi
HAVE_NGINX=0
if has_system nginx && command -v nginx >/dev/null 2>&1; then HAVE_NGINX=1; fi
[[ $HAVE_GATEWAY == 1 ]] || echo "note: gateway not measured ($GATEWAY_BIN missing or not in SYSTEMS)" >&2
if [[ -n $BASELINE_BIN && ! -x $BASELINE_BIN ]]; then
  echo "BASELINE_BIN=$BASELINE_BIN is not an executable" >&2
  exit 1
fi
[[ $HAVE_NGINX == 1 ]] || echo "note: nginx not measured (not on PATH or not in SYSTEMS)" >&2

# ---------------------------------------------------------------- processes
UP_PID=
start_upstream() {
  local cmd=("${LOAD_CPU[@]}" "$UPSTREAM" --listen "127.0.0.1:$UP_PORT"
    --threads "$UPSTREAM_THREADS" --timer "$UPSTREAM_TIMER" "$@")
  # shellcheck disable=SC2206 # word-split on purpose: several arguments
  cmd+=(${UPSTREAM_ARGS:-})
  echo "${cmd[*]}" >>"$CMDS"
  "${cmd[@]}" >>"$OUT/upstream.log" 2>&1 &
  UP_PID=$!
  STARTED+=("$UP_PID")
  wait_http "http://127.0.0.1:$UP_PORT/v1/models" || { echo "bench-upstream did not start" >&2; exit 1; }
}
stop_upstream() { stop_pid "$UP_PID"; UP_PID=; }

GW_PID=
GW_ENV=(UPSTREAM_BASE_URL="http://127.0.0.1:$UP_PORT/v1" HOST=127.0.0.1 PORT="$GW_PORT"
  RATE_LIMIT_RPM=100000000 RATE_LIMIT_BURST=100000000 MAX_STREAMS_PER_CLIENT=100000
  MAX_STREAMS=100000 RUST_LOG=warn HEARTBEAT_SECS=15 SHUTDOWN_GRACE_SECS=2 WORKERS="$SUT_WORKERS")
# start_gateway [BINARY]: $GATEWAY_BIN unless another binary (the baseline) is given.
start_gateway() {
  local bin=${1:-$GATEWAY_BIN}
  grep -qF "$bin" "$CMDS" || echo "env ${GW_ENV[*]} ${SUT_CPU[*]} $bin" >>"$CMDS"
  # Started from $OUT so that no .env of the work tree is read.
  (cd "$OUT" && exec env "${GW_ENV[@]}" "${SUT_CPU[@]}" "$bin") >>"$OUT/gateway.log" 2>&1 &
  GW_PID=$!
  STARTED+=("$GW_PID")
  if ! wait_http "http://127.0.0.1:$GW_PORT/healthz" 100; then
    echo "gateway did not become healthy; last log lines:" >&2
    tail -n 20 "$OUT/gateway.log" >&2 || true
    stop_pid "$GW_PID"
    GW_PID=
    return 1
  fi
}
stop_gateway() { stop_pid "$GW_PID"; GW_PID=; }

NGX_PID=
NGX_DIR=$OUT/nginx
# shellcheck source=bench/nginx-conf.sh
. "$ROOT/bench/nginx-conf.sh"
start_nginx() {
  write_nginx_conf
  local cmd=("${SUT_CPU[@]}" nginx -p "$NGX_DIR" -c "$NGX_DIR/nginx.conf" -g "daemon off; master_process on;")
  grep -qF "$NGX_DIR/nginx.conf" "$CMDS" || echo "${cmd[*]}" >>"$CMDS"
  "${cmd[@]}" >>"$NGX_DIR/stdout.log" 2>&1 &
  NGX_PID=$!
  STARTED+=("$NGX_PID")
  if ! wait_http "http://127.0.0.1:$NGX_PORT/v1/models" 100; then
    echo "nginx did not start:" >&2
    tail -n 20 "$NGX_DIR/error.log" >&2 || true
    stop_pid "$NGX_PID"
    NGX_PID=
    return 1
  fi
}
# nginx master + its workers, comma separated.
nginx_pids() {
  local w
  w=$(pgrep -P "$NGX_PID" | paste -sd, -)
  echo "$NGX_PID${w:+,$w}"
}
stop_nginx() { stop_pid "$NGX_PID"; NGX_PID=; }

# ---------------------------------------------------------------- loadgen wrappers
# lg MODE SCENARIO TITLE LABEL URL [loadgen args...]
lg() {
  local mode=$1 sc=$2 title=$3 label=$4 url=$5
  shift 5
  local f="$OUT/$sc-$label.json"
  if ((ROUNDS > 1)); then f="$OUT/$sc-$label-r$ROUND.json"; fi
  log "$sc: $label (round $ROUND of $ROUNDS)"
  if "${LOAD_CPU[@]}" "$LG" "$mode" --url "$url" --scenario "$sc" --title "$title" --label "$label" \
    --round "$ROUND" --threads "$LOADGEN_THREADS" --json-out "$f" "$@" >&2; then
    FILES+=("$f")
  else
    echo "loadgen failed for $sc/$label" >&2
  fi
}

# closed SCENARIO TITLE CONCURRENCY UPSTREAM_ARGS...: direct, gateway (/v1 and /api/chat), nginx.
closed() {
  local sc=$1 title=$2 c=$3
  shift 3
  start_upstream "$@"
  local common=(-c "$c" -d "$DURATION" --warmup-secs "$WARMUP")
  if [[ -n ${BODY_JSON:-} ]]; then common+=(--extra-json "@$BODY_JSON"); fi
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    closed_round "$sc" "$title" "${common[@]}"
  done
  ROUND=1
  stop_upstream
}

# closed_round SCENARIO TITLE LOADGEN_ARGS...: every system once, on the running upstream. The
# order rotates from round to round, so that a machine getting slower or faster during a run
# does not always favour the same system.
closed_round() {
  local sc=$1 title=$2
  shift 2
  local systems=(direct gateway gateway-browser nginx) i
  [[ -n $BASELINE_BIN ]] && systems+=(baseline)
  for ((i = 0; i < ${#systems[@]}; i++)); do
    closed_system "${systems[$(((i + ROUND - 1) % ${#systems[@]}))]}" "$sc" "$title" "$@"
  done
}

# closed_system SYSTEM SCENARIO TITLE LOADGEN_ARGS...: one closed-loop row; each gateway and nginx
# row on a fresh process.
closed_system() {
  local sys=$1 sc=$2 title=$3
  shift 3
  case $sys in
    direct)
      has_system direct || return 0
      lg run "$sc" "$title" direct "http://127.0.0.1:$UP_PORT" "$@" --pid "upstream=$UP_PID"
      ;;
    gateway | gateway-browser)
      [[ $HAVE_GATEWAY == 1 ]] || return 0
      local dialect=openai
      # (d) the browser API on its own gateway, so its RSS growth is the resume buffers'.
      [[ $sys == gateway-browser ]] && dialect=browser
      if start_gateway; then
        lg run "$sc" "$title" "$sys" "http://127.0.0.1:$GW_PORT" "$@" \
          --dialect "$dialect" --pid "sut=$GW_PID" --pid "upstream=$UP_PID"
        stop_gateway
      fi
      ;;
    nginx)
      if [[ $HAVE_NGINX == 1 ]] && start_nginx; then
        lg run "$sc" "$title" nginx "http://127.0.0.1:$NGX_PORT" "$@" \
          --pid "sut=$(nginx_pids)" --pid "upstream=$UP_PID"
        stop_nginx
      fi
      ;;
    baseline)
      if start_gateway "$BASELINE_BIN"; then
        lg run "$sc" "$title" baseline "http://127.0.0.1:$GW_PORT" "$@" \
          --dialect openai --pid "sut=$GW_PID" --pid "upstream=$UP_PID"
        stop_gateway
      fi
      ;;
  esac
}

# held SCENARIO TITLE STREAMS SYSTEMS...: each system on a fresh upstream and a fresh SUT.
held() {
  local sc=$1 title=$2 n=$3
  shift 3
  local common=(hold -n "$n" --hold-secs "$HOLD_SECS" --settle-secs 2 --connect-parallel 128
    --open-timeout-secs 30 --ramp-timeout-secs 90)
  local idle=(--chunks 32 --ttft-ms 0 --delay-ms 600000)
  local sys
  for sys in "$@"; do
    case $sys in
      direct)
        has_system direct || continue
        start_upstream "${idle[@]}"
        lg "${common[0]}" "$sc" "$title" direct "http://127.0.0.1:$UP_PORT" "${common[@]:1}" \
          --pid "upstream=$UP_PID"
        stop_upstream
        ;;
      gateway | gateway-browser)
        [[ $HAVE_GATEWAY == 1 ]] || continue
        start_upstream "${idle[@]}"
        local dialect=openai
        [[ $sys == gateway-browser ]] && dialect=browser
        if start_gateway; then
          lg "${common[0]}" "$sc" "$title" "$sys" "http://127.0.0.1:$GW_PORT" "${common[@]:1}" \
            --dialect "$dialect" --pid "sut=$GW_PID" --pid "upstream=$UP_PID"
          stop_gateway
        fi
        stop_upstream
        ;;
      nginx)
        [[ $HAVE_NGINX == 1 ]] || continue
        start_upstream "${idle[@]}"
        if start_nginx; then
          lg "${common[0]}" "$sc" "$title" nginx "http://127.0.0.1:$NGX_PORT" "${common[@]:1}" \
            --pid "sut=$(nginx_pids)" --pid "upstream=$UP_PID"
          stop_nginx
        fi
        stop_upstream
        ;;
    esac
  done
}

# ---------------------------------------------------------------- scenarios
if has_scenario a; then
  closed a-c64 "(a) 32 chunks 20 ms apart, C=64 (+ (d) /api/chat)" 64 --chunks 32 --delay-ms 20
  closed a-c256 "(a) 32 chunks 20 ms apart, C=256 (+ (d) /api/chat)" 256 --chunks 32 --delay-ms 20
fi
if has_scenario b; then
  closed b-c64 "(b) 32 chunks, no delay, C=64 (+ (d) /api/chat)" 64 --chunks 32 --delay-ms 0 --ttft-ms 0
fi
if has_scenario c; then
  held c-hold5000 "(c) $HOLD_STREAMS idle streams held open (+ (d) /api/chat)" "$HOLD_STREAMS" \
    direct gateway gateway-browser nginx
  held c-hold9000 "(c') $MAX_TEST_STREAMS concurrent idle streams" "$MAX_TEST_STREAMS" gateway nginx
fi

# ---------------------------------------------------------------- report
log "report"
{
  echo "## streamgate benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r); gateway: $GATEWAY_LINE;" \
    "${BASELINE_BIN:+baseline: $(binary_line "$BASELINE_BIN"); }nginx:" \
    "$( (nginx -v 2>&1 || echo none) | sed 's/^nginx version: //'); results in $OUT"
  echo
  if ((${#SUT_CPU[@]})); then
    echo "Pinned (PIN=1): bench-upstream and loadgen on CPU 0, the system under test on CPU 1."
    echo
  fi
  if [[ -n ${BODY_JSON:-} ]]; then
    echo "Closed-loop request bodies merged with $BODY_JSON ($(wc -c <"$BODY_JSON") bytes)."
    echo
  fi
  if ((${#FILES[@]})); then
    "$LG" report "${FILES[@]}"
  else
    echo "(no results)"
  fi
  echo
  echo "### processes started"
  echo
  echo '```'
  cat "$CMDS"
  echo '```'
} | tee "$OUT/report.md"
echo "total $(($(date +%s) - T_START)) s; report: $OUT/report.md" >&2
