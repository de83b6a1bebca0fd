#!/usr/bin/env bash
# Instructions per request of a gateway binary, counted by valgrind's callgrind: repeatable on
# a shared machine, unlike wall-clock time. Starts bench-upstream (32 chunks, by default with no
# delay) and the gateway under callgrind with instrumentation off, warms up with 100 requests,
# then counts 400.
#
#   bench/callgrind.sh [GATEWAY_BIN|nginx] [openai|browser]
#
# `nginx` counts nginx instead, configured as bench/run.sh's (one worker, no master process):
# the same answers through the other relay, for a like-for-like count of user-space work.
# CHUNKS=1 measures what a request costs besides its events (default 32).
# DELAY_MS=2 paces the upstream's events 2 ms apart, so that each arrives in a read (and a
# wake-up) of its own, as a model's tokens do; the default, 0, lets them arrive together.
# EXTRA_JSON=FILE merges that JSON object into each request body (loadgen --extra-json): with
# bench/history-4k.json, a 21-message, 4 KB history in place of the one-line prompt.
# TLS=1 serves the upstream over HTTPS (bench-upstream --tls, HTTP/1.1 or HTTP/2 as the relay
# asks by ALPN), its certificate trusted through SSL_CERT_FILE (nginx: proxy_ssl_verify).
#
# Needs valgrind and the bench binaries (cargo build --release -p streamgate-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/callgrind-lib.sh
. bench/callgrind-lib.sh
bin=$(relay_bin "${1:-}")
dialect=${2:-openai}
if [[ $bin == nginx && $dialect != openai ]]; then echo "nginx relays the openai dialect only" >&2; exit 2; fi
bins=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
out=$(mktemp -d)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT

delay=${DELAY_MS:-0}
chunks=${CHUNKS:-32}
settings=()
upstream_tls=()
scheme=http
if [[ ${TLS:-0} == 1 ]]; then
  scheme=https
  export UP_CA=$out/upstream-cert.pem
  upstream_tls=(--tls "$UP_CA")
  settings=(UPSTREAM_BASE_URL=https://127.0.0.1:19081/v1 "SSL_CERT_FILE=$UP_CA")
fi
start_upstream --chunks "$chunks" --delay-ms "$delay" --ttft-ms "$delay" "${upstream_tls[@]}"
if [[ $scheme == https ]]; then
  for _ in $(seq 100); do [[ -s $UP_CA ]] && break; sleep 0.1; done
fi
start_relay_under_callgrind "${settings[@]}"
body=()
if [[ -n "${EXTRA_JSON:-}" ]]; then body=(--extra-json "@$EXTRA_JSON"); fi
"$bins/loadgen" run --url http://127.0.0.1:19080 --dialect "$dialect" -c 4 -n 100 --timeout-secs 120 "${body[@]}" >/dev/null
callgrind_control -i on "$gw" >/dev/null
"$bins/loadgen" run --url http://127.0.0.1:19080 --dialect "$dialect" -c 4 -n 400 --timeout-secs 120 "${body[@]}" >/dev/null
callgrind_control -d "$gw" >/dev/null
sleep 1
total=$(total_instructions "$out"/cg.out.*)
echo "$bin ($dialect, $scheme upstream): $((total / 400)) instructions per request (400 requests of $chunks chunks, ${delay} ms apart)"
if [[ -n "${KEEP:-}" ]]; then cp "$out"/cg.out.* "$KEEP"; echo "profile kept in $KEEP"; fi
