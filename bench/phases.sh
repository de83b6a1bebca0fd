#!/usr/bin/env bash
# Instructions per request in each phase of a burst, counted by valgrind's callgrind: what the
# gateway does between the packets that matter for time to first token in scenario (a).
#
#   bench/phases.sh [GATEWAY_BIN|nginx] [openai|browser]
#
# bench-upstream answers with one content chunk 1.5 s after the request and ends 1.5 s later,
# so the phases of N streams in step (N=40 by default, one worker) lie seconds apart. The
# first run of N opens the client connections; in the second, the gateway is dumped:
#   A  the end of round 1 and the request path of round 2 (in a closed loop the next
#      requests come in the same burst as the last events),
#   B  the first token of round 2 (the upstream's head and first event in, the client's head
#      and first event out),
#   C  the end of round 2 (the last events, [DONE], the summary and clean-up).
# The request path is A - C. The dumps include the timer wheel's and the sweeper's work in
# their windows: counts of one binary move by up to ~700 instructions (4%) from run to run,
# so compare several runs of each.
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
n=${N:-40}
out=$(mktemp -d)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT

start_upstream --chunks 1 --delay-ms 1500 --ttft-ms 1500
start_relay_under_callgrind WORKERS=1
run() { "$bins/loadgen" run --url http://127.0.0.1:19080 --dialect "$dialect" -c "$n" -n "$1" --timeout-secs 120 >/dev/null; }
run "$n"
run $((2 * n)) &
loadgen=$!
# Round 1 ends at 3 s and round 2's first token comes at 4.5 s: dump between them.
sleep 2.25; callgrind_control -i on "$gw" >/dev/null 2>&1
sleep 1.5; callgrind_control -d A "$gw" >/dev/null 2>&1
sleep 1.5; callgrind_control -d B "$gw" >/dev/null 2>&1
wait "$loadgen"
callgrind_control -d C "$gw" >/dev/null 2>&1
sleep 1
count() { total_instructions "$out/cg.out.$1"; }
a=$(($(count 1) / n)) b=$(($(count 2) / n)) c=$(($(count 3) / n))
echo "$bin ($dialect), $n streams in step, instructions per request:"
echo "  request path (A - C)  $((a - c))"
echo "  first token (B)       $b"
echo "  end of answer (C)     $c"
if [[ -n "${KEEP:-}" ]]; then mkdir -p "$KEEP"; cp "$out"/cg.out.* "$KEEP"; echo "profiles kept in $KEEP"; fi
