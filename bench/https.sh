#!/usr/bin/env bash
# bench/https.sh — the gateway relaying from an upstream over HTTPS, as it does from OpenAI or
# DeepSeek, side by side with nginx relaying from the same upstream over HTTPS (and, with
# BASELINE_BIN, a second gateway build) in one run. bench/run.sh measures over plain HTTP;
# the load generator speaks plain HTTP only, so there is no `direct` row here: the rows are
# compared with each other.
#
# Scenarios, as bench/run.sh's (a), (b) and (c):
#   a  32 chunks 20 ms apart, closed loop at C=64: time to first token, gaps between events
#   b  32 chunks with no delay, closed loop at C=64: req/s and the relay's CPU per request
#   c  HOLD_STREAMS idle streams held open (first chunk, then nothing): the relay's resident
#      memory per held stream, each holding a TLS connection to the upstream
# bench-upstream serves TLS with a self-signed certificate (`--tls`, HTTP/1.1 or HTTP/2 by
# ALPN), trusted by the gateway through SSL_CERT_FILE and by nginx through
# proxy_ssl_trusted_certificate. Each round runs every system once, in an order that rotates.
#
# Environment: GATEWAY_BIN [target/pgo/streamgate], BASELINE_BIN [none], ROUNDS [3],
# DURATION [8], WARMUP [2], SUT_WORKERS [2], SCENARIOS ["a b c"], HOLD_STREAMS [2000],
# HOLD_SECS [5], OUT [a new temporary
# directory], UP_PORT GW_PORT NGX_PORT [18481 18480 18482]. Needs the bench binaries
# (cargo build --release -p streamgate-bench); nginx is measured when it is installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY_BIN=$(realpath "${GATEWAY_BIN:-$TARGET_DIR/pgo/streamgate}")
BASELINE_BIN=${BASELINE_BIN:+$(realpath "$BASELINE_BIN")}
BINS=${BENCH_BIN_DIR:-$TARGET_DIR/release}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
SUT_WORKERS=${SUT_WORKERS:-2}
SCENARIOS=${SCENARIOS:-"a b c"}
HOLD_STREAMS=${HOLD_STREAMS:-2000}
HOLD_SECS=${HOLD_SECS:-5}
UP_PORT=${UP_PORT:-18481}
GW_PORT=${GW_PORT:-18480}
NGX_PORT=${NGX_PORT:-18482}
OUT=${OUT:-$(mktemp -d /tmp/streamgate-https.XXXXXX)}
mkdir -p "$OUT"
CERT=$OUT/upstream-cert.pem

for f in "$GATEWAY_BIN" "$BINS/bench-upstream" "$BINS/loadgen" ${BASELINE_BIN:+"$BASELINE_BIN"}; do
  [[ -x $f ]] || { echo "missing: $f" >&2; exit 1; }
done
SYSTEMS=(gateway)
[[ -z $BASELINE_BIN ]] || SYSTEMS+=(baseline)
if command -v nginx >/dev/null; then SYSTEMS+=(nginx); else echo "note: nginx not installed, not measured" >&2; fi

STARTED=()
cleanup() { for p in "${STARTED[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# wait_until URL [CA]: up to 20 s for URL to answer.
wait_until() {
  for _ in $(seq 200); do
    curl -fsS ${2:+--cacert "$2"} "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

UP_PID=
start_upstream() {
  rm -f "$CERT"
  "$BINS/bench-upstream" --listen "127.0.0.1:$UP_PORT" --tls "$CERT" "$@" >>"$OUT/upstream.log" 2>&1 &
  UP_PID=$!
  STARTED+=("$UP_PID")
  for _ in $(seq 100); do [[ -s $CERT ]] && break; sleep 0.1; done
  wait_until "https://127.0.0.1:$UP_PORT/v1/models" "$CERT" || { echo "bench-upstream did not start" >&2; exit 1; }
}

# start SYSTEM: sets SUT_PID (the processes to measure, comma separated) and URL.
start() {
  case $1 in
    gateway | baseline)
      local bin=$GATEWAY_BIN
      [[ $1 == baseline ]] && bin=$BASELINE_BIN
      (cd "$OUT" && exec env UPSTREAM_BASE_URL="https://127.0.0.1:$UP_PORT/v1" SSL_CERT_FILE="$CERT" \
        HOST=127.0.0.1 PORT="$GW_PORT" RATE_LIMIT_RPM=100000000 RATE_LIMIT_BURST=100000000 \
        MAX_STREAMS_PER_CLIENT=100000 MAX_STREAMS=100000 RUST_LOG=warn HEARTBEAT_SECS=15 \
        SHUTDOWN_GRACE_SECS=2 WORKERS="$SUT_WORKERS" "$bin") >>"$OUT/$1.log" 2>&1 &
      SUT_PID=$!
      STARTED+=("$SUT_PID")
      URL=http://127.0.0.1:$GW_PORT
      wait_until "$URL/healthz" || { echo "$1 did not start" >&2; exit 1; }
      ;;
    nginx)
      # shellcheck source=bench/nginx-conf.sh
      . "$ROOT/bench/nginx-conf.sh"
      NGX_DIR=$OUT/nginx UP_CA=$CERT write_nginx_conf
      nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -g "daemon off; master_process on;" \
        >>"$OUT/nginx/stdout.log" 2>&1 &
      local master=$!
      STARTED+=("$master")
      URL=http://127.0.0.1:$NGX_PORT
      wait_until "$URL/v1/models" || { echo "nginx did not start" >&2; tail "$OUT/nginx/error.log" >&2; exit 1; }
      SUT_PID=$master,$(pgrep -P "$master" | paste -sd, -)
      ;;
  esac
}
# stop: ends the relay and waits for it (nginx's workers are not this shell's children; their
# master waits for them), so that the next row finds its port free.
stop() {
  local p
  for p in ${SUT_PID//,/ }; do kill "$p" 2>/dev/null || true; done
  for p in ${SUT_PID//,/ }; do wait "$p" 2>/dev/null || true; done
}

for sc in $SCENARIOS; do
  case $sc in
    a) start_upstream --chunks 32 --delay-ms 20 ;;
    b) start_upstream --chunks 32 --delay-ms 0 --ttft-ms 0 ;;
    c) start_upstream --chunks 32 --ttft-ms 0 --delay-ms 600000 ;;
    *) echo "unknown scenario $sc" >&2; exit 2 ;;
  esac
  rounds=$ROUNDS
  [[ $sc == c ]] && rounds=1
  for ((round = 1; round <= rounds; round++)); do
    n=${#SYSTEMS[@]}
    for ((i = 0; i < n; i++)); do
      system=${SYSTEMS[$(((i + round - 1) % n))]}
      start "$system"
      echo "$sc: $system (round $round of $rounds)" >&2
      if [[ $sc == c ]]; then
        load=(hold -n "$HOLD_STREAMS" --hold-secs "$HOLD_SECS" --settle-secs 2 --connect-parallel 128
          --open-timeout-secs 30 --ramp-timeout-secs 90)
      else
        load=(run -c 64 -d "$DURATION" --warmup-secs "$WARMUP")
      fi
      "$BINS/loadgen" "${load[@]}" --url "$URL" --label "$system" --scenario "$sc" --round "$round" \
        --pid "sut=$SUT_PID" --json-out "$OUT/$sc-$system-r$round.json" >>"$OUT/loadgen.log" 2>&1
      stop
    done
  done
  # A fresh upstream per scenario, so held streams do not linger into the next.
  kill "$UP_PID" 2>/dev/null || true
done

python3 - "$OUT" "$GATEWAY_BIN" "${BASELINE_BIN:-}" <<'EOF' | tee "$OUT/report.md"
import glob, json, statistics, sys
out, gateway, baseline = sys.argv[1:4]
rows = {}
for path in sorted(glob.glob(f"{out}/*-r*.json")):
    d = json.load(open(path))
    rows.setdefault((d["scenario"], d["label"]), []).append(d)
med = lambda xs: statistics.median(xs)
print(f"gateway: {gateway}" + (f"; baseline: {baseline}" if baseline else ""))
rounds = max((len(v) for (sc, _), v in rows.items() if sc != "c"), default=0)
print(f"upstream over HTTPS (bench-upstream --tls); a, b: closed loop C=64, medians of {rounds} rounds\n")
print("| scenario | system | TTFT p50 (ms) | TTFT p99 | gap p99 | req/s | relay CPU µs/req | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for (sc, label), runs in sorted(rows.items()):
    if sc == "c":
        continue
    lat = lambda k, p: med([r["latency_us"][k][p] for r in runs]) / 1000
    cpu = med([r["cpu"]["sut"]["per_req_us"] for r in runs])
    errors = sum(r["errors"] for r in runs)
    print(f"| {sc} | {label} | {lat('ttft','p50'):.2f} | {lat('ttft','p99'):.2f} | {lat('gap','p99'):.2f} "
          f"| {med([r['rps'] for r in runs]):.0f} | {cpu:.1f} | {errors} |")
# Each system against nginx in the same round: medians of the rounds' differences and ratios.
pairs = [(sc, label) for (sc, label) in sorted(rows) if sc != "c" and label != "nginx" and (sc, "nginx") in rows]
if pairs:
    print("\n| scenario | system − nginx, same round (median) | TTFT p50 (ms) | TTFT p99 | req/s × | CPU/req × |")
    print("|---|---|---:|---:|---:|---:|")
for sc, label in pairs:
    by_round = {r["round"]: r for r in rows[(sc, "nginx")]}
    same = [(r, by_round[r["round"]]) for r in rows[(sc, label)] if r["round"] in by_round]
    diff = lambda p: med([(a["latency_us"]["ttft"][p] - b["latency_us"]["ttft"][p]) / 1000 for a, b in same])
    ratio = lambda f: med([f(a) / f(b) for a, b in same])
    print(f"| {sc} | {label} ({len(same)} rounds) | {diff('p50'):+.2f} | {diff('p99'):+.2f} "
          f"| {ratio(lambda r: r['rps']):.2f} | {ratio(lambda r: r['cpu']['sut']['per_req_us']):.2f} |")
held = [(label, runs[0]) for (sc, label), runs in sorted(rows.items()) if sc == "c"]
if held:
    print("\n| held streams | system | opened | failed | relay RSS before / held (MiB) | KiB per held stream |")
    print("|---:|---|---:|---:|---:|---:|")
    for label, r in held:
        rss = r["rss_kib"]["sut"]
        print(f"| {r['streams']} | {label} | {r['opened']} | {r['failed']} "
              f"| {rss['before'] / 1024:.1f} / {rss['held'] / 1024:.1f} | {rss['per_stream_kib']:.2f} |")
EOF
echo "results in $OUT" >&2
