#!/usr/bin/env python3
"""Time to first token as the packets show it, and the relay's share of it.

Reads a loopback capture of one load-generator run through a relay (streamgate or nginx) or
straight to bench-upstream, and reports per request, from the packets' timestamps:

  TTFT on the wire    the client's request packet -> the first packet carrying a content
                      event back on the same client connection
  relay request path  the client's request packet -> the relay's request to the upstream
  upstream            the relay's request -> the upstream's first event on that connection
  relay first event   the upstream's first event -> the relay's first event to the client

Requests are paired across the relay by the chunk id bench-upstream puts in every event
(`chatcmpl-bench…`); the relay's request to the upstream is the last one sent on the upstream
connection that then carried that id. The load generator's own timing is not in these figures:
they say what happened between the sockets, which is what a relay is responsible for.

  tcpdump -i lo -nn -s 0 -w run.pcap 'tcp port 18080 or tcp port 18081' &   # while loadgen runs
  python3 bench/wire_latency.py run.pcap 18080 [--upstream-port 18081]

With several requests in flight at once (`loadgen run -c 64`), the relay works through each
burst one request after another, and the spacing of its packets within a burst is what each
request costs it there (the CPU time and everything else that keeps it from the next socket):

  relay requests      spacing of the relay's requests to the upstream, one after another
  relay first events  spacing of the relay's first content packets to its clients

Spacings over 200 µs are left out: those are between bursts, not within one.

Needs tcpdump (to read the capture back as text). Only the openai dialect (`/v1`).
"""

import argparse
import re
import statistics
import subprocess
import sys

HEAD = re.compile(r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): .*length (\d+)")
CHUNK_ID = re.compile(r"chatcmpl-bench(\w+)")


def packets(pcap):
    """(time, source port, destination port, payload text) of every packet with a payload."""
    text = subprocess.run(
        ["tcpdump", "-tt", "-nn", "-A", "-r", pcap],
        check=True,
        capture_output=True,
        text=True,
        errors="replace",
    ).stdout
    current = None
    for line in text.splitlines():
        m = HEAD.match(line)
        if m:
            if current and current[3]:
                yield current
            current = [float(m[1]), int(m[2]), int(m[3]), ""]
            if int(m[4]) == 0:
                current = None
        elif current is not None:
            current[3] += line + "\n"
    if current and current[3]:
        yield current


def first_events(pkts, relay_port, upstream_port):
    """Per request: (client request time, first content packet time, chunk id) on the client
    side, and (relay request time, upstream first event time) by chunk id."""
    asked, client = {}, []
    sent, upstream = {}, {}
    for t, src, dst, txt in pkts:
        if dst == relay_port and "POST " in txt:
            asked[src] = t
        elif src == relay_port and '"role"' in txt and dst in asked:
            m = CHUNK_ID.search(txt)
            client.append((asked.pop(dst), t, m[1] if m else None))
        elif dst == upstream_port and src != relay_port and "POST " in txt:
            sent[src] = t
        elif src == upstream_port and '"role"' in txt and dst in sent:
            m = CHUNK_ID.search(txt)
            if m:
                upstream[m[1]] = (sent.pop(dst), t)
    return client, upstream


def summary(name, values):
    if not values:
        return
    v = sorted(values)
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))] * 1e3
    print(
        f"{name:20s} n={len(v):5d}  p50 {q(0.5):7.3f} ms  p90 {q(0.9):7.3f}  "
        f"p99 {q(0.99):7.3f}  mean {statistics.mean(v) * 1e3:7.3f}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("port", type=int, help="the port the load generator spoke to")
    ap.add_argument("--upstream-port", type=int, default=18081)
    a = ap.parse_args()
    pkts = list(packets(a.pcap))
    client, upstream = first_events(pkts, a.port, a.upstream_port)
    summary("TTFT on the wire", [d - c for c, d, _ in client])
    if a.port == a.upstream_port:
        return
    pairs = [(c, d, *upstream[i]) for c, d, i in client if i in upstream]
    if not pairs:
        sys.exit("no request could be paired across the relay (is this a /v1 run?)")
    summary("relay request path", [b - c for c, _, b, _ in pairs])
    summary("upstream", [u - b for _, _, b, u in pairs])
    summary("relay first event", [d - u for _, d, _, u in pairs])
    posts = sorted(t for t, src, dst, txt in pkts if dst == a.upstream_port and "POST " in txt)
    spacing("relay requests", posts)
    spacing("relay first events", sorted(d for _, d, _ in client))


def spacing(name, times, within=200e-6):
    """The median time between consecutive packets of one burst."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b - a < within)
    if gaps:
        median = statistics.median(gaps) * 1e6
        print(f"{name:20s} n={len(gaps):5d}  spacing p50 {median:6.1f} µs within bursts")


if __name__ == "__main__":
    main()
