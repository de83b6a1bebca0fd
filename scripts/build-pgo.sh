#!/usr/bin/env bash
# The gateway's release binary, built with profile-guided optimisation (PGO): the build the
# container image ships and bench/run.sh measures.
#
#   scripts/build-pgo.sh [OUT]        # OUT (from the repository root) defaults to
#                                     # target/pgo/streamgate ($CARGO_TARGET_DIR/pgo/...)
#   scripts/build-pgo.sh --prepare    # steps 1 and 2 only: compile the dependencies (the
#                                     # Dockerfile's cached layer)
#
# Why: the gateway's CPU per event is spread thin over actix, tokio, the chunk scan and the
# relay (no function above ~2.5% of an answer's instructions, bench/callgrind.sh), so no one
# change to the code takes much off. Telling the compiler which branches and calls are hot
# does, across all of them and the dependencies: BENCHMARKS.md has the counts and the runs.
#
# Steps (needs the toolchain's llvm-profdata: `rustup component add llvm-tools`):
#   1. the bench tools (bench-upstream, loadgen) built as usual, into target/release;
#   2. the gateway built instrumented (-Cprofile-generate) into target/pgo/gen;
#   3. that gateway run under a training load (below) and stopped with SIGTERM, so it writes
#      its profile on exit;
#   4. the profile merged, and the gateway built again with it (-Cprofile-use) into
#      target/pgo/use, then copied to OUT.
# A plain `cargo build --release` (target/release/streamgate) is neither used nor replaced.
#
# The training load is what the gateway does in production, on loopback: both dialects,
# through an upstream over plain HTTP and over HTTPS (the gateway's own HTTP/1.1 client, plain
# and over rustls; bench-upstream --tls), events arriving together and paced, with and without
# the usage chunk, one-line prompts and a 4 KB chat history (bench/history-4k.json); and the
# mock model. Code it does not reach (error paths, say) is compiled
# as cold code: laid out apart from the hot paths, still correct. Training takes
# about 20 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
out=${1:-$target/pgo/streamgate}
pgo=$(realpath -m "$target/pgo")
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x "$profdata" ]]; then
  echo "llvm-profdata not found at $profdata; install it with: rustup component add llvm-tools" >&2
  exit 1
fi

# The flags are part of what cargo fingerprints: the same string each time keeps step 2's
# dependencies built from one run to the next.
gen_flags="-Cprofile-generate=$pgo/raw"
use_flags="-Cprofile-use=$pgo/merged.profdata"

echo "== 1/4 bench tools"
cargo build --release --locked -p streamgate-bench
bins="$target/release"

echo "== 2/4 instrumented gateway"
RUSTFLAGS="$gen_flags" cargo build --release --locked -p streamgate --target-dir "$pgo/gen"
[[ "$out" == --prepare ]] && exit 0

echo "== 3/4 training"
rm -rf "$pgo/raw" "$pgo/train"
mkdir -p "$pgo/train"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# Ports from the kernel would need a log to be parsed; these are fixed and loopback-only.
up_port=${PGO_UPSTREAM_PORT:-18481}
tls_port=${PGO_TLS_PORT:-18482}
gw_port=${PGO_GATEWAY_PORT:-18480}

wait_http() {
  for _ in $(seq 150); do
    curl -fsS -o /dev/null -m 1 ${2:+--cacert "$2"} "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

"$bins/bench-upstream" --listen "127.0.0.1:$up_port" --chunks 32 --delay-ms 0 --ttft-ms 0 \
  >"$pgo/train/upstream.log" 2>&1 &
pids+=($!)
"$bins/bench-upstream" --listen "127.0.0.1:$tls_port" --chunks 32 --delay-ms 0 --ttft-ms 0 \
  --tls "$pgo/train/upstream-cert.pem" >"$pgo/train/upstream-tls.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$up_port/v1/models"
wait_http "https://127.0.0.1:$tls_port/v1/models" "$pgo/train/upstream-cert.pem"

# run_gateway NAME=VALUE...: the instrumented gateway with these settings until train_done.
run_gateway() {
  (cd "$pgo/train" && exec env HOST=127.0.0.1 PORT="$gw_port" WORKERS=2 RUST_LOG=warn \
    RATE_LIMIT_RPM=0 MAX_STREAMS_PER_CLIENT=100000 MAX_STREAMS=100000 SHUTDOWN_GRACE_SECS=1 \
    "$@" "$pgo/gen/release/streamgate") >>"$pgo/train/gateway.log" 2>&1 &
  gw=$!
  pids+=("$gw")
  wait_http "http://127.0.0.1:$gw_port/healthz"
}
# The profile is written when the process exits normally.
train_done() {
  kill -TERM "$gw"
  wait "$gw"
}
# A load with a failed request trains the wrong paths: stop there.
load() {
  local result
  result=$("$bins/loadgen" run --url "http://127.0.0.1:$gw_port" --threads 2 --json "$@" 2>/dev/null)
  if [[ $result != *'"errors":0,'* ]]; then
    echo "training load failed (loadgen run $*): $result" >&2
    return 1
  fi
}
paced() { echo "{\"bench_delay_ms\":$1,\"bench_ttft_ms\":$1}"; }

for upstream in "http://127.0.0.1:$up_port/v1" "https://127.0.0.1:$tls_port/v1"; do
  run_gateway UPSTREAM_BASE_URL="$upstream" SSL_CERT_FILE="$pgo/train/upstream-cert.pem"
  load -c 64 -n 6000
  load -c 64 -n 3000 --dialect browser
  load -c 64 -n 1500 --include-usage
  # A chat front-end resends the conversation every turn: bodies of kilobytes.
  load -c 64 -n 1500 --extra-json @bench/history-4k.json
  load -c 64 -n 1000 --extra-json "$(paced 2)"
  load -c 64 -n 600 --dialect browser --extra-json "$(paced 2)"
  load -c 256 -n 512 --extra-json "$(paced 20)"
  train_done
done
run_gateway MOCK_TTFT_MS=0 MOCK_TOKENS_PER_SEC=0
load -c 16 -n 1000
load -c 16 -n 1000 --dialect browser
train_done

echo "== 4/4 gateway built with the profile"
"$profdata" merge -o "$pgo/merged.profdata" "$pgo/raw"
# A new profile changes nothing cargo fingerprints (the flags name the same file), so the
# dependencies built with the last one would be kept: build them all again.
rm -rf "$pgo/use"
RUSTFLAGS="$use_flags" cargo build --release --locked -p streamgate --target-dir "$pgo/use"
mkdir -p "$(dirname "$out")"
cp "$pgo/use/release/streamgate" "$out"
echo "built $out"
