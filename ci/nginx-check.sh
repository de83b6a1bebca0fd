#!/usr/bin/env bash
# End-to-end check that SSE streams pass through nginx event by event.
#
# Starts the gateway ($STREAMGATE_BIN, default target/release/streamgate) on a
# free loopback port with a slowly paced mock model, puts nginx in front of it
# with docker/nginx.conf (addresses substituted to loopback), and streams
# /api/chat and /v1/chat/completions through it with a small client that
# timestamps every event as it arrives. A stream passes when its content
# events arrive spread out as produced (first to last >= 1.2 s, never more than
# 3 within 20 ms), not as one batch at the end.
#
# Then repeats the nginx part with the widely copied WebSocket-style block
# (Upgrade/Connection "upgrade", proxy_buffering on), and with nginx's bare
# defaults (HTTP/1.0 to the upstream, proxy_buffering on; here nginx really
# does batch a stream unless the upstream sends `X-Accel-Buffering: no`): the
# gateway's `X-Accel-Buffering: no` header must keep both streaming.
#
# Needs python3 and nginx (installed from Debian when missing). Everything
# binds 127.0.0.1; every wait is bounded; all processes are stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

STREAMGATE_BIN="${STREAMGATE_BIN:-target/release/streamgate}"
[[ "$STREAMGATE_BIN" == /* ]] || STREAMGATE_BIN="$ROOT/$STREAMGATE_BIN"
NGINX_CONF_SRC="$ROOT/docker/nginx.conf"
PYTHON="${PYTHON:-python3}"

die() {
    echo "nginx-check: FATAL: $*" >&2
    exit 1
}

log() {
    echo "nginx-check: $*"
}

# --- tools ----------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
[[ -x "$STREAMGATE_BIN" ]] || die "gateway binary $STREAMGATE_BIN not found or not executable (build it, or set STREAMGATE_BIN)"
[[ -f "$NGINX_CONF_SRC" ]] || die "$NGINX_CONF_SRC not found"

find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

NGINX="$(find_nginx)"
if [[ -z "$NGINX" ]]; then
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null || die "nginx is missing and not running as root (no sudo) to install it"
        SUDO=(sudo -n)
    fi
    log "installing nginx from Debian"
    apt_log="$(mktemp)"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nginx >"$apt_log" 2>&1; then
        if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nginx; } >"$apt_log" 2>&1; then
            cat "$apt_log" >&2
            rm -f "$apt_log"
            die "apt-get install nginx failed"
        fi
    fi
    rm -f "$apt_log"
    NGINX="$(find_nginx)"
    [[ -n "$NGINX" ]] || die "nginx installed but not found on PATH or in /usr/sbin"
fi
log "using $("$NGINX" -v 2>&1) at $NGINX"

# --- scratch dir, process bookkeeping, cleanup ---------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nginx-check.XXXXXX")"
# nginx workers drop root privileges (to nobody) and must reach their temp dirs.
chmod 0755 "$WORK"

PIDS=()
stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ "$rc" -ne 0 || -n "${KEEP_WORK:-}" ]]; then
        echo "nginx-check: logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the client -----------------------------------------------------------------
CLIENT="$WORK/sse_client.py"
cat >"$CLIENT" <<'PY'
"""Tiny SSE client for ci/nginx-check.sh (standard library only).

  free-port                      print a free 127.0.0.1 TCP port
  wait URL SECONDS               poll URL until it answers 200
  stream PORT PATH KIND BODY     POST BODY to PATH, check the stream (KIND: api | openai)
"""
import http.client
import json
import os
import socket
import sys
import time
import urllib.request

MIN_SPREAD_S = float(os.environ.get("MIN_SPREAD_S", "1.2"))
BURST_WINDOW_S = float(os.environ.get("BURST_WINDOW_S", "0.020"))
MAX_IN_WINDOW = int(os.environ.get("MAX_IN_WINDOW", "3"))
MIN_CONTENT_EVENTS = int(os.environ.get("MIN_CONTENT_EVENTS", "10"))
READ_TIMEOUT_S = 15.0
TOTAL_TIMEOUT_S = 60.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait(url, seconds):
    deadline = time.monotonic() + float(seconds)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return 0
                last = "status %d" % r.status
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = repr(e)
        time.sleep(0.1)
    print("timed out after %ss waiting for %s: %s" % (seconds, url, last), file=sys.stderr)
    return 1


def read_events(resp, t0):
    """Yield (arrival_seconds, {field: [values]}, [comments]) per SSE event."""
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    fields, comments = {}, []
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("stream still open after %ss" % TOTAL_TIMEOUT_S)
        raw = resp.readline()
        if not raw:
            if fields:
                yield time.monotonic() - t0, fields, comments
            return
        line = raw.decode("utf-8")
        if line.endswith("\r\n"):
            line = line[:-2]
        elif line.endswith("\n") or line.endswith("\r"):
            line = line[:-1]
        if line == "":
            if fields or comments:
                yield time.monotonic() - t0, fields, comments
            fields, comments = {}, []
        elif line.startswith(":"):
            comments.append(line)
        else:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            fields.setdefault(name, []).append(value)


def stream(port, path, kind, body, request_id=None):
    problems = []
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if request_id:
        headers["X-Request-Id"] = request_id
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=READ_TIMEOUT_S)
    t0 = time.monotonic()
    conn.request("POST", path, body=body.encode(), headers=headers)
    resp = conn.getresponse()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    if resp.status != 200:
        print("  status %d, body: %s" % (resp.status, resp.read(2000)[:2000]))
        return 1
    ctype = hdrs.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        problems.append("content-type is %r, want text/event-stream" % ctype)
    if os.environ.get("EXPECT_ACCEL") == "1" and hdrs.get("x-accel-buffering", "").lower() != "no":
        problems.append("no 'X-Accel-Buffering: no' header (got %r)" % hdrs.get("x-accel-buffering"))
    if request_id and hdrs.get("x-request-id") != request_id:
        problems.append("X-Request-Id %r not echoed (got %r)" % (request_id, hdrs.get("x-request-id")))
    if "content-encoding" in hdrs:
        problems.append("SSE response is compressed: Content-Encoding %r" % hdrs["content-encoding"])

    events = list(read_events(resp, t0))
    conn.close()

    content_times, log = [], []
    saw_retry_first, ended, after_end = False, False, 0
    data_events = 0
    last_id = 0
    for i, (t, f, _comments) in enumerate(events):
        data = f.get("data", [])
        if ended and data:
            after_end += 1
        if kind == "api":
            if "retry" in f and data_events == 0:
                saw_retry_first = True
            if not data:
                continue
            data_events += 1
            ids = f.get("id", [])
            if not ids or not ids[-1].isdigit():
                problems.append("event without a numeric id: %r" % f)
            else:
                n = int(ids[-1])
                if n != last_id + 1:
                    problems.append("id %d after %d" % (n, last_id))
                last_id = n
            name = f.get("event", ["message"])[-1]
            payload = json.loads("\n".join(data))
            if name == "stop":
                ended = True
                log.append("%7.3fs stop %s" % (t, payload.get("finish_reason")))
            elif name == "message" and payload.get("content"):
                content_times.append(t)
                log.append("%7.3fs content %r" % (t, payload["content"]))
            else:
                log.append("%7.3fs %s %s" % (t, name, json.dumps(payload)[:120]))
        else:
            if not data:
                continue
            text = "\n".join(data)
            if text == "[DONE]":
                ended = True
                log.append("%7.3fs [DONE]" % t)
                continue
            payload = json.loads(text)
            if "error" in payload:
                problems.append("error event: %s" % text[:200])
            choices = payload.get("choices") or []
            delta = choices[0].get("delta", {}) if choices else {}
            if delta.get("content"):
                content_times.append(t)
                log.append("%7.3fs content %r" % (t, delta["content"]))
            else:
                log.append("%7.3fs chunk %s" % (t, text[:120]))

    if kind == "api" and not saw_retry_first:
        problems.append("stream does not open with a retry: field")
    if not ended:
        problems.append("stream did not end with %s" % ("event: stop" if kind == "api" else "data: [DONE]"))
    if after_end:
        problems.append("%d events after the end" % after_end)
    if len(content_times) < MIN_CONTENT_EVENTS:
        problems.append("%d content events, want >= %d" % (len(content_times), MIN_CONTENT_EVENTS))

    spread = (content_times[-1] - content_times[0]) if content_times else 0.0
    most = 0
    for i, t in enumerate(content_times):
        k = sum(1 for u in content_times[i:] if u - t < BURST_WINDOW_S)
        most = max(most, k)
    if spread < MIN_SPREAD_S:
        problems.append("content events spread over %.3fs, want >= %.1fs (batched?)" % (spread, MIN_SPREAD_S))
    if most > MAX_IN_WINDOW:
        problems.append("%d content events arrived within %dms, want <= %d (batched?)"
                        % (most, BURST_WINDOW_S * 1000, MAX_IN_WINDOW))

    first = content_times[0] if content_times else float("nan")
    print("  %d content events, first at %.3fs, spread %.3fs, at most %d within %dms"
          % (len(content_times), first, spread, most, BURST_WINDOW_S * 1000))
    if problems:
        for p in problems:
            print("  problem: " + p)
        print("  events as received:")
        for line in log:
            print("    " + line)
        return 1
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "free-port":
        free_port()
        return 0
    if cmd == "wait":
        return wait(argv[2], argv[3])
    if cmd == "stream":
        try:
            return stream(argv[2], argv[3], argv[4], argv[5], os.environ.get("REQUEST_ID"))
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            print("  client error: %r" % (e,))
            return 1
    print("unknown command %r" % cmd, file=sys.stderr)
    return 2


sys.exit(main(sys.argv))
PY

client() {
    "$PYTHON" "$CLIENT" "$@"
}

# --- checks bookkeeping ---------------------------------------------------------
passed=0
failed=0
check() {
    local name="$1"
    shift
    echo "---- $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   - $name"
    else
        failed=$((failed + 1))
        echo "FAIL - $name"
        gateway_alive || true
    fi
}

API_BODY='{"prompt":"hello nginx","mock":{"tokens":20,"tokens_per_sec":10}}'
OPENAI_BODY='{"model":"mock","stream":true,"messages":[{"role":"user","content":"hi"}],"mock":{"tokens":20,"tokens_per_sec":10}}'

# --- the gateway ----------------------------------------------------------------
GW_PORT="$(client free-port)"
mkdir -p "$WORK/gateway"
log "starting gateway $STREAMGATE_BIN on 127.0.0.1:$GW_PORT (mock model, 10 tokens/s)"
# A clean environment and a scratch working directory: no .env and no
# UPSTREAM_* from the caller can point this test at a real (billable) upstream.
# Rate limits are raised so readiness polling cannot trip them.
(
    cd "$WORK/gateway"
    exec env -i PATH="$PATH" HOME="$WORK/gateway" \
        HOST=127.0.0.1 PORT="$GW_PORT" \
        UPSTREAM_BASE_URL= UPSTREAM_API_KEY= GATEWAY_API_KEYS= \
        MOCK_TTFT_MS=100 MOCK_TOKENS_PER_SEC=10 \
        RATE_LIMIT_RPM=6000 RATE_LIMIT_BURST=1000 \
        RUST_LOG=info LOG_FORMAT=text \
        "$STREAMGATE_BIN"
) >"$WORK/gateway.log" 2>&1 &
PIDS+=("$!")
GW_PID="$!"

# True while the gateway runs; else says so, with the end of its log.
gateway_alive() {
    kill -0 "$GW_PID" 2>/dev/null && return 0
    echo "nginx-check: the gateway (pid $GW_PID) has exited; end of its log:" >&2
    tail -n 30 "$WORK/gateway.log" >&2 || true
    return 1
}

if ! client wait "http://127.0.0.1:$GW_PORT/healthz" 30; then
    gateway_alive && tail -n 30 "$WORK/gateway.log" >&2
    die "gateway did not become healthy on 127.0.0.1:$GW_PORT"
fi

# --- nginx ----------------------------------------------------------------------
# Writes $dir/nginx.conf from docker/nginx.conf for the given mode:
#   sse        the file as shipped
#   websocket  its Connection "" replaced by the WebSocket pair, buffering on
render_nginx_conf() {
    local mode="$1" dir="$2" port="$3"
    local conf="$dir/nginx.conf"
    mkdir -p "$dir/tmp"
    # Comment lines are left alone: they quote the directives being replaced.
    sed -e '/^[[:space:]]*#/b' \
        -e "s|gateway:8080|127.0.0.1:$GW_PORT|" \
        -e "s|listen 8081;|listen 127.0.0.1:$port;|" \
        -e "s|access_log /dev/stdout |access_log $dir/access.log |" \
        -e "s|error_log /dev/stderr |error_log $dir/error.log |" \
        -e "s|^http {|http {\n    client_body_temp_path $dir/tmp/body;\n    proxy_temp_path $dir/tmp/proxy;\n    fastcgi_temp_path $dir/tmp/fastcgi;\n    uwsgi_temp_path $dir/tmp/uwsgi;\n    scgi_temp_path $dir/tmp/scgi;|" \
        "$NGINX_CONF_SRC" >"$conf"
    case "$mode" in
    sse) ;;
    websocket)
        # shellcheck disable=SC2016 # $http_upgrade is nginx's variable, literal here
        sed -i -e '/^[[:space:]]*#/b' \
            -e 's|proxy_set_header Connection "";|proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection "upgrade";|' \
            -e 's|proxy_buffering off;|proxy_buffering on;|' \
            "$conf"
        ;;
    http10)
        sed -i -e '/^[[:space:]]*#/b' \
            -e '/proxy_http_version 1.1;/d' \
            -e '/proxy_set_header Connection "";/d' \
            -e 's|proxy_buffering off;|proxy_buffering on;|' \
            "$conf"
        ;;
    *) die "unknown nginx mode $mode" ;;
    esac

    # Every substitution must have happened: fail loudly if nginx.conf changed
    # shape, rather than testing something else than intended.
    local active
    active="$(sed -e 's/#.*//' "$conf")"
    grep -q "server 127.0.0.1:$GW_PORT;" <<<"$active" || die "nginx.conf: upstream 'server gateway:8080;' not found"
    grep -q "listen 127.0.0.1:$port;" <<<"$active" || die "nginx.conf: 'listen 8081;' not found"
    grep -q "proxy_temp_path $dir/tmp/proxy;" <<<"$active" || die "nginx.conf: 'http {' line not found"
    if grep -Eq 'gateway:8080|listen 8081' <<<"$active"; then
        die "nginx.conf: an unsubstituted gateway:8080 or listen 8081 is left"
    fi
    if [[ "$mode" == sse ]]; then
        grep -q 'proxy_http_version 1.1;' <<<"$active" || die "nginx.conf: 'proxy_http_version 1.1;' missing"
        grep -q 'proxy_set_header Connection "";' <<<"$active" || die "nginx.conf: 'proxy_set_header Connection \"\";' missing"
        grep -q 'proxy_buffering off;' <<<"$active" || die "nginx.conf: 'proxy_buffering off;' missing"
    else
        grep -q 'proxy_buffering on;' <<<"$active" || die "nginx.conf: 'proxy_buffering off;' not found"
        if grep -q 'proxy_buffering off;' <<<"$active"; then
            die "nginx.conf ($mode mode): proxy_buffering off is still set somewhere"
        fi
        if grep -q 'proxy_set_header Connection "";' <<<"$active"; then
            die "nginx.conf ($mode mode): 'proxy_set_header Connection \"\";' is still set somewhere"
        fi
    fi
    if [[ "$mode" == websocket ]]; then
        grep -q 'proxy_set_header Connection "upgrade";' <<<"$active" || die "nginx.conf: 'proxy_set_header Connection \"\";' not found"
    fi
    if [[ "$mode" == http10 ]] && grep -q 'proxy_http_version' <<<"$active"; then
        die "nginx.conf (http10 mode): proxy_http_version is still set somewhere"
    fi
}

NGINX_PID=""
start_nginx() {
    local mode="$1"
    local dir="$WORK/nginx-$mode" port
    port="$(client free-port)"
    mkdir -p "$dir"
    render_nginx_conf "$mode" "$dir" "$port"
    local g="daemon off; master_process on; pid $dir/nginx.pid;"
    if ! "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g "$g" 2>"$dir/test.log"; then
        cat "$dir/test.log" >&2
        die "nginx -t failed for the $mode configuration"
    fi
    log "starting nginx ($mode config) on 127.0.0.1:$port -> 127.0.0.1:$GW_PORT"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g "$g" >"$dir/stdout.log" 2>&1 &
    NGINX_PID="$!"
    PIDS+=("$NGINX_PID")
    if ! client wait "http://127.0.0.1:$port/healthz" 15; then
        tail -n 20 "$dir/error.log" >&2 || true
        gateway_alive
        die "nginx ($mode) did not proxy /healthz on 127.0.0.1:$port"
    fi
    NGINX_PORT="$port"
}

stop_nginx() {
    [[ -n "$NGINX_PID" ]] && stop_pid "$NGINX_PID"
    NGINX_PID=""
}

# --- checks ---------------------------------------------------------------------
# Baseline, no nginx: the gateway itself streams, with the header nginx obeys.
check "gateway direct: /api/chat streams event by event, X-Accel-Buffering: no" \
    env EXPECT_ACCEL=1 "$PYTHON" "$CLIENT" stream "$GW_PORT" /api/chat api "$API_BODY"
check "gateway direct: /v1/chat/completions streams event by event, X-Accel-Buffering: no" \
    env EXPECT_ACCEL=1 "$PYTHON" "$CLIENT" stream "$GW_PORT" /v1/chat/completions openai "$OPENAI_BODY"

start_nginx sse
check "nginx (docker/nginx.conf): /api/chat streams event by event" \
    client stream "$NGINX_PORT" /api/chat api "$API_BODY"
check "nginx (docker/nginx.conf): /v1/chat/completions streams event by event" \
    client stream "$NGINX_PORT" /v1/chat/completions openai "$OPENAI_BODY"
check "nginx (docker/nginx.conf): X-Request-Id forwarded and echoed" \
    env REQUEST_ID="nginx-check-$$" "$PYTHON" "$CLIENT" stream "$NGINX_PORT" /api/chat api "$API_BODY"
stop_nginx

start_nginx websocket
check "nginx (WebSocket-style block, buffering on): /api/chat still streams" \
    client stream "$NGINX_PORT" /api/chat api "$API_BODY"
check "nginx (WebSocket-style block, buffering on): /v1/chat/completions still streams" \
    client stream "$NGINX_PORT" /v1/chat/completions openai "$OPENAI_BODY"
stop_nginx

# nginx's own defaults (HTTP/1.0 to the upstream, buffering on): here nginx
# does hold a stream back until its buffer fills or the response ends, unless
# the upstream says X-Accel-Buffering: no.
start_nginx http10
check "nginx (bare proxy_pass: HTTP/1.0 upstream, buffering on): /api/chat still streams" \
    client stream "$NGINX_PORT" /api/chat api "$API_BODY"
check "nginx (bare proxy_pass: HTTP/1.0 upstream, buffering on): /v1/chat/completions still streams" \
    client stream "$NGINX_PORT" /v1/chat/completions openai "$OPENAI_BODY"
stop_nginx

if ! gateway_alive; then
    failed=$((failed + 1))
    echo "FAIL - the gateway died during the checks"
fi

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
