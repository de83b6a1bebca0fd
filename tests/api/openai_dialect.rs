//! `/v1/chat/completions`: byte-faithful relay, usage handling, forwarding.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::upstream::{
    self, MockUpstream, Script, Step, content_chunk, finish_chunk, sse_head, usage_chunk,
};
use crate::support::{TestApp, frames, spawn_app};

async fn gateway_for(upstream: &MockUpstream, extra: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![
        ("UPSTREAM_BASE_URL", upstream.base_url.as_str()),
        ("UPSTREAM_API_KEY", "sk-test-key"),
    ];
    pairs.extend_from_slice(extra);
    spawn_app(&pairs).await
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[actix_web::test]
async fn each_upstream_chunk_reaches_the_client_byte_for_byte_then_done() {
    let tool_call = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":null}]}).to_string();
    let reasoning = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"think"},"finish_reason":null}]}).to_string();
    let odd_spacing =
        r#"{"id":"c",  "choices":[{"index":0,"delta":{"content":"é \"q\""}}], "x_vendor": [1, 2]}"#
            .to_owned();
    let sent = [
        reasoning,
        content_chunk("Hel"),
        odd_spacing,
        tool_call,
        finish_chunk("tool_calls"),
    ];
    let mut steps = vec![sse_head()];
    steps.extend(sent.iter().cloned().map(Step::Data));
    steps.push(Step::Data(usage_chunk(3, 4)));
    steps.push(Step::Data("[DONE]".into()));
    let upstream = MockUpstream::start(vec![Script(steps)]).await;
    let app = gateway_for(&upstream, &[]).await;

    let response = app.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert!(response.headers().get("content-encoding").is_none());
    let got = frames(response).await;

    let mut expected: Vec<String> = sent.iter().map(|c| format!("data: {c}")).collect();
    expected.push("data: [DONE]".into());
    assert_eq!(
        got, expected,
        "the usage chunk the client did not ask for is stripped, nothing else changes"
    );
}

#[actix_web::test]
async fn usage_is_relayed_when_the_client_asks_for_it() {
    let upstream = MockUpstream::start(vec![upstream::answer(&["a", "b"], Duration::ZERO)]).await;
    let app = gateway_for(&upstream, &[]).await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let got = frames(app.post("/v1/chat/completions", &body).await).await;
    assert_eq!(got[got.len() - 2], format!("data: {}", usage_chunk(5, 2)));
    assert_eq!(got.last().unwrap(), "data: [DONE]");
}

#[actix_web::test]
async fn usage_on_the_finish_chunk_is_removed_from_it_when_not_asked_for() {
    let finish_with_usage = json!({"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}).to_string();
    let upstream = MockUpstream::start(vec![Script(vec![
        sse_head(),
        Step::Data(content_chunk("x")),
        Step::Data(finish_with_usage),
        Step::Data("[DONE]".into()),
    ])])
    .await;
    let app = gateway_for(&upstream, &[]).await;
    let got = frames(app.post("/v1/chat/completions", &chat(true)).await).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let finish: Value = serde_json::from_str(got[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish.get("usage").is_none(), "{finish}");
}

#[actix_web::test]
async fn upstream_comments_are_not_relayed_and_crlf_lines_are_understood() {
    let upstream = MockUpstream::start(vec![Script(vec![
        sse_head(),
        Step::Raw(": keep-alive\r\n\r\n".into()),
        Step::Raw(format!("data: {}\r\n\r\n", content_chunk("a"))),
        Step::Raw(": OPENROUTER PROCESSING\n\n".into()),
        Step::Raw(format!("data: {}\r\n\r\n", finish_chunk("stop"))),
        Step::Raw("data: [DONE]\r\n\r\n".into()),
    ])])
    .await;
    let app = gateway_for(&upstream, &[]).await;
    let got = frames(app.post("/v1/chat/completions", &chat(true)).await).await;
    assert_eq!(
        got,
        vec![
            format!("data: {}", content_chunk("a")),
            format!("data: {}", finish_chunk("stop")),
            "data: [DONE]".into()
        ]
    );
}

#[actix_web::test]
async fn the_request_is_forwarded_with_every_field_and_usage_requested() {
    let upstream = MockUpstream::start(vec![upstream::answer(&["a"], Duration::ZERO)]).await;
    let app = gateway_for(&upstream, &[("UPSTREAM_MODEL", "default-model")]).await;
    let body = json!({
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto", "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "seed": 7,
        "response_format": {"type": "json_object"}, "user": "u1", "vendor_extra": {"k": [1]}
    });
    let response = app.post("/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    frames(response).await;
    let sent = &upstream.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization").as_deref(),
        Some("Bearer sk-test-key")
    );
    assert_eq!(sent.body["model"], "default-model");
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    for field in [
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "response_format",
        "user",
        "vendor_extra",
    ] {
        assert_eq!(sent.body[field], body[field], "{field} forwarded unchanged");
    }
}

#[actix_web::test]
async fn a_non_streaming_answer_is_the_upstreams_json_unchanged() {
    let completion = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let upstream = MockUpstream::start(vec![Script(vec![
        Step::Head(200, "application/json"),
        Step::Raw(completion.into()),
    ])])
    .await;
    let app = gateway_for(&upstream, &[]).await;
    let response = app.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), completion);
    assert!(upstream.requests()[0].body.get("stream_options").is_none());
}

#[actix_web::test]
async fn a_slow_first_token_commits_early_with_heartbeats() {
    let upstream = MockUpstream::start(vec![Script(vec![
        sse_head(),
        Step::Sleep(Duration::from_millis(2500)),
        Step::Data(content_chunk("late")),
        Step::Data(finish_chunk("stop")),
        Step::Data("[DONE]".into()),
    ])])
    .await;
    let app = gateway_for(&upstream, &[("HEARTBEAT_SECS", "1")]).await;
    let response = app.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(response.status(), 200);
    let got = frames(response).await;
    assert_eq!(
        got[0], ": ping",
        "the committed stream starts with a heartbeat: {got:?}"
    );
    assert!(
        got.iter().filter(|f| *f == ": ping").count() >= 2,
        "{got:?}"
    );
    assert!(got.contains(&format!("data: {}", content_chunk("late"))));
    assert_eq!(got.last().unwrap(), "data: [DONE]");
}

/// An upstream behind a same-host 307 (a moved path): the POST is repeated there with its body
/// and key, and the answer streams as usual. The gateway's own plain-http client sees the 307
/// first and hands the request to reqwest, which follows it: through the redirect code our
/// vendored reqwest patch touches (vendor/reqwest/README.streamgate.md).
#[actix_web::test]
async fn a_same_host_307_is_followed_with_the_body_and_the_key() {
    let moved = Script(vec![
        Step::Head(307, "text/plain"),
        Step::Header("Location: /v2/chat/completions".into()),
        Step::Raw("moved".into()),
    ]);
    let answer = upstream::answer(&["Hi", "!"], Duration::ZERO);
    let upstream = MockUpstream::start(vec![moved.clone(), moved, answer]).await;
    let app = gateway_for(&upstream, &[]).await;
    let response = app.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(response.status(), 200);
    let frames = frames(response).await;
    assert_eq!(crate::support::openai_text(&frames), "Hi!");
    assert_eq!(frames.last().map(String::as_str), Some("data: [DONE]"));

    let requests = upstream.requests();
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v2/chat/completions"
        ]
    );
    assert_eq!(requests[2].body, requests[0].body);
    assert_eq!(
        requests[2].header("authorization").as_deref(),
        Some("Bearer sk-test-key")
    );
}
