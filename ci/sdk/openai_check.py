"""The official `openai` Python SDK against a running streamgate (mock model): a real client
that nobody here wrote. Usage: STREAMGATE_URL=http://127.0.0.1:8080 python3 openai_check.py"""

import os
import sys

import openai
from openai import OpenAI

URL = os.environ.get("STREAMGATE_URL", "http://127.0.0.1:8080")
client = OpenAI(base_url=f"{URL}/v1", api_key=os.environ.get("STREAMGATE_KEY", "unused"), max_retries=0)
MESSAGES = [{"role": "user", "content": "hello from the openai sdk"}]
results = []


def check(name):
    def run(fn):
        try:
            fn()
            results.append((name, None))
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            results.append((name, e))
            print(f"FAIL {name}: {e!r}")
        return fn
    return run


@check("stream=True without include_usage: text arrives, no usage chunk")
def _():
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                 extra_body={"mock": {"tokens": 12}}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("You asked about hello from the openai sdk"), text
    assert all(c.usage is None for c in chunks), "usage leaked to a client that did not ask"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.model == "gpt-4o-mini" for c in chunks)


@check("stream=True with include_usage: a final usage chunk with empty choices")
def _():
    chunks = list(client.chat.completions.create(model="mock", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_body={"mock": {"tokens": 12}}))
    last = chunks[-1]
    assert last.choices == [], last
    assert last.usage.completion_tokens == 12, last.usage
    assert last.usage.total_tokens == last.usage.prompt_tokens + 12


@check("max_tokens ends with finish_reason length")
def _():
    chunks = list(client.chat.completions.create(model="mock", messages=MESSAGES, stream=True, max_tokens=3))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


@check("stream=False returns one chat.completion")
def _():
    done = client.chat.completions.create(model="mock", messages=MESSAGES, extra_body={"mock": {"tokens": 5}})
    assert done.object == "chat.completion"
    assert done.usage.completion_tokens == 5
    assert done.choices[0].message.content.startswith("You asked")


@check("a failure mid-stream raises APIError in the SDK")
def _():
    stream = client.chat.completions.create(model="mock", messages=MESSAGES, stream=True,
                                            extra_body={"mock": {"tokens": 10, "fail_after": 3}})
    got = []
    try:
        for c in stream:
            got.append(c)
    except openai.APIError as e:
        assert "mock failure" in str(e), e
        assert len(got) == 3, got
        return
    raise AssertionError("no error raised")


@check("a bad request is a 400 BadRequestError naming the field")
def _():
    try:
        client.chat.completions.create(model="mock", messages=[{"role": "wizard", "content": "x"}])
    except openai.BadRequestError as e:
        assert "messages[0].role" in str(e), e
        return
    raise AssertionError("no error raised")


@check("models.list shows the mock")
def _():
    assert [m.id for m in client.models.list()] == ["mock"]


failed = sum(1 for _, e in results if e)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
