"""Measures what resumable streams cost: resident memory held by N finished browser streams of
T tokens, and after they expire; and the time from a reconnect (GET with Last-Event-ID) to the
first replayed event. Starts its own release gateway on the mock model.

    python3 bench/resume_memory.py [--streams 1000] [--tokens 500] [--ttl 20]
"""

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--streams", type=int, default=1000)
p.add_argument("--tokens", type=int, default=500)
p.add_argument("--ttl", type=int, default=20)
p.add_argument("--bin", default="target/release/streamgate")
p.add_argument("--rounds", type=int, default=3, help="rounds of streams, each left to expire")
args = p.parse_args()

env = {"PORT": "0", "MOCK_TTFT_MS": "0", "MOCK_TOKENS_PER_SEC": "0", "RATE_LIMIT_RPM": "0",
       "MAX_STREAMS_PER_CLIENT": "100000", "STREAM_TTL_SECS": str(args.ttl), "RUST_LOG": "warn,streamgate=info",
       "PATH": "/usr/bin:/bin"}
env.update({k: v for k, v in __import__("os").environ.items() if k.startswith(("MALLOC", "GLIBC"))})
gw = subprocess.Popen([args.bin], env=env, stderr=subprocess.PIPE, text=True)
port = None
for line in gw.stderr:
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
assert port, "gateway did not start"
# Keep draining the log so the gateway never blocks on a full pipe.
subprocess.Popen(["cat"], stdin=gw.stderr, stdout=subprocess.DEVNULL)


def rss_kib():
    with open(f"/proc/{gw.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def post_stream(conn):
    body = json.dumps({"prompt": "measure resume", "mock": {"tokens": args.tokens}})
    conn.request("POST", "/api/chat", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    sid = r.getheader("X-Stream-Id")
    r.read()
    return sid


conn = http.client.HTTPConnection("127.0.0.1", port)
post_stream(conn)  # warm up allocator and workers
base = rss_kib()
ids = [post_stream(conn) for _ in range(args.streams)]
time.sleep(0.5)
held = rss_kib()
print(f"RSS before: {base} KiB; with {args.streams} finished streams of {args.tokens} tokens: {held} KiB "
      f"(+{held - base} KiB, {(held - base) / args.streams:.1f} KiB per stream)")

# Reconnect latency: a fresh connection, GET with Last-Event-ID, time to the first event byte.
samples = []
for i, sid in enumerate(ids[:300]):
    c = http.client.HTTPConnection("127.0.0.1", port)
    t0 = time.perf_counter()
    c.request("GET", f"/api/chat/streams/{sid}", headers={"Last-Event-ID": str(args.tokens // 2)})
    r = c.getresponse()
    first = r.read1(65536)
    while b"id: " not in first:
        first += r.read1(65536)
    samples.append((time.perf_counter() - t0) * 1e6)
    r.read()
    c.close()
samples.sort()
print(f"reconnect to first replayed event (new TCP connection + GET, n={len(samples)}): "
      f"p50 {statistics.median(samples):.0f} us, p90 {samples[int(len(samples) * .9)]:.0f} us, "
      f"p99 {samples[int(len(samples) * .99)]:.0f} us")



def wait_expired(sid):
    deadline = time.time() + args.ttl + 10
    while time.time() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", f"/api/chat/streams/{sid}")
        status = c.getresponse().status
        c.close()
        if status == 404:
            break
        time.sleep(0.5)
    time.sleep(1.5)


# Freed memory goes back to the allocator, which may keep it mapped for reuse: later rounds of
# the same size must then fit in what earlier ones left (a leak would add a round's worth each).
for round_no in range(1, args.rounds + 1):
    if round_no > 1:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        ids = [post_stream(conn) for _ in range(args.streams)]
        print(f"round {round_no}: {args.streams} more streams: {rss_kib()} KiB")
    wait_expired(ids[-1])
    print(f"round {round_no}: all expired (STREAM_TTL_SECS={args.ttl}): {rss_kib()} KiB")
gw.terminate()
gw.wait(timeout=40)
sys.exit(0)
