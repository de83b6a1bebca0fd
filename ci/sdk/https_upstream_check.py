"""The official `openai` Python SDK against streamgate relaying from an upstream over HTTPS
(bench-upstream --tls, CHUNKS chunks of "tok " each, trusted through SSL_CERT_FILE): the
gateway's own TLS client under a real client, one stream at a time and many at once.
Usage: STREAMGATE_URL=http://127.0.0.1:8080 CHUNKS=8 python3 https_upstream_check.py"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

URL = os.environ.get("STREAMGATE_URL", "http://127.0.0.1:8080")
CHUNKS = int(os.environ.get("CHUNKS", "8"))
client = OpenAI(base_url=f"{URL}/v1", api_key="unused", max_retries=0)


def one_stream(_=None):
    chunks = list(client.chat.completions.create(
        model="bench-model", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok " * CHUNKS, repr(text)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == CHUNKS, chunks[-1]
    return text


failures = 0
for name, run in [
    ("three streams one after another (a kept TLS connection)", lambda: [one_stream() for _ in range(3)]),
    ("32 streams at once (a TLS connection each)",
     lambda: list(ThreadPoolExecutor(32).map(one_stream, range(32)))),
]:
    try:
        run()
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure
        failures += 1
        print(f"FAIL {name}: {e!r}")
sys.exit(1 if failures else 0)
