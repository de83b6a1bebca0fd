# shellcheck shell=bash
# Shared by bench/callgrind.sh and bench/phases.sh, sourced after they set $bin (the gateway,
# or `nginx`), $bins (the bench binaries), $out (a scratch directory) and the array pids
# (killed by their EXIT trap).

# shellcheck source=bench/nginx-conf.sh
. "$(dirname "${BASH_SOURCE[0]}")/nginx-conf.sh"

# The relay named by a script's first argument: `nginx`, or a gateway binary (by default the
# plain release build).
relay_bin() {
  case ${1:-} in
    nginx)
      # Said here, or the scripts would wait 30 s for a relay that never started.
      command -v nginx >/dev/null || { echo "nginx is not installed" >&2; return 1; }
      echo nginx
      ;;
    *) realpath "${1:-target/release/streamgate}" ;;
  esac
}

# bench-upstream on 127.0.0.1:19081 with the arguments given.
start_upstream() {
  "$bins/bench-upstream" --listen 127.0.0.1:19081 "$@" >/dev/null 2>&1 &
  pids+=($!)
}

# $bin on 127.0.0.1:19080 under callgrind: the gateway, or nginx (arguments then ignored).
start_relay_under_callgrind() {
  if [[ $bin == nginx ]]; then start_nginx_under_callgrind; else start_gateway_under_callgrind "$@"; fi
}

# The gateway on 127.0.0.1:19080 under callgrind, instrumentation off, its profile written to
# $out/cg.out.*; arguments are extra NAME=VALUE settings. Started from $out, so no .env of the
# work tree is read. Sets $gw to its pid once it answers.
start_gateway_under_callgrind() {
  (cd "$out" && exec env -i PATH="$PATH" UPSTREAM_BASE_URL=http://127.0.0.1:19081/v1 PORT=19080 \
    RATE_LIMIT_RPM=0 MAX_STREAMS_PER_CLIENT=100000 RUST_LOG=warn "$@" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.out" "$bin" \
    >/dev/null 2>&1) &
  pids+=($!)
  for _ in $(seq 150); do curl -fsS http://127.0.0.1:19080/healthz >/dev/null 2>&1 && break; sleep 0.2; done
  gw=$(pgrep -f "callgrind-out-file=$out/cg.out" | head -1)
}

# nginx configured as bench/run.sh's, with one worker and no master process (so that one
# process does all the relaying, as one gateway worker does in bench/phases.sh), on
# 127.0.0.1:19080 under callgrind, instrumentation off. Sets $gw to its pid once it relays.
start_nginx_under_callgrind() {
  NGX_DIR=$out/nginx SUT_WORKERS=1 UP_PORT=19081 NGX_PORT=19080 write_nginx_conf
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.out" \
    nginx -p "$out/nginx" -c "$out/nginx/nginx.conf" -g "daemon off; master_process off;" \
    >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 150); do curl -fsS http://127.0.0.1:19080/v1/models >/dev/null 2>&1 && break; sleep 0.2; done
  gw=$(pgrep -f "callgrind-out-file=$out/cg.out" | head -1)
}

# The instructions a callgrind profile counted in all.
total_instructions() {
  callgrind_annotate "$@" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}
