//! An upstream that refuses, fails, stalls or sends garbage: a real HTTP status before the
//! stream begins, an error event and a clean end after.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::upstream::{self, MockUpstream, Script, Step, content_chunk, sse_head};
use crate::support::{TestApp, data, event_name, frames, spawn_app};

async fn gateway_for(upstream: &MockUpstream, extra: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![
        ("UPSTREAM_BASE_URL", upstream.base_url.as_str()),
        ("UPSTREAM_API_KEY", "sk-secret-upstream-key"),
    ];
    pairs.extend_from_slice(extra);
    spawn_app(&pairs).await
}

fn chat() -> Value {
    json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

async fn error_body(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.expect("an OpenAI-shaped error body");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

#[actix_web::test]
async fn an_upstream_4xx_is_the_clients_status_with_a_sanitised_message() {
    let upstream = MockUpstream::start(vec![upstream::refusal(
        400,
        "bad key sk-secret-upstream-key for https://u:p@example.com/v1",
    )])
    .await;
    let app = gateway_for(&upstream, &[]).await;
    let response = app.post("/v1/chat/completions", &chat()).await;
    assert_eq!(response.status(), 400);
    let message = error_body(response).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("bad key *****"), "{message}");
    assert!(
        !message.contains("sk-secret") && !message.contains("u:p@"),
        "{message}"
    );
}

#[actix_web::test]
async fn a_5xx_is_retried_then_answered_502() {
    let upstream = MockUpstream::start(vec![upstream::refusal(500, "boom")]).await;
    let app = gateway_for(&upstream, &[("UPSTREAM_RETRIES", "2")]).await;
    let response = app.post("/v1/chat/completions", &chat()).await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        error_body(response).await["error"]["code"],
        "upstream_error"
    );
    assert_eq!(upstream.requests().len(), 3, "one attempt and two retries");
}

#[actix_web::test]
async fn a_429_then_success_is_invisible_to_the_client() {
    let busy = Script(vec![
        Step::Head(429, "application/json"),
        Step::Header("Retry-After: 0".into()),
        Step::Raw("{}".into()),
    ]);
    let upstream = MockUpstream::start(vec![busy, upstream::answer(&["ok"], Duration::ZERO)]).await;
    let app = gateway_for(&upstream, &[("UPSTREAM_RETRIES", "1")]).await;
    let response = app.post("/api/chat", &json!({"prompt": "hi"})).await;
    assert_eq!(response.status(), 200);
    let got = frames(response).await;
    assert_eq!(data(&got[1])["content"], "ok");
    assert_eq!(upstream.requests().len(), 2);
}

#[actix_web::test]
async fn a_429_that_persists_is_relayed_with_retry_after() {
    let busy = Script(vec![
        Step::Head(429, "application/json"),
        Step::Header("Retry-After: 30".into()),
        Step::Raw(r#"{"error":{"message":"slow down"}}"#.into()),
    ]);
    let upstream = MockUpstream::start(vec![busy]).await;
    let app = gateway_for(&upstream, &[("UPSTREAM_RETRIES", "2")]).await;
    let response = app.post("/v1/chat/completions", &chat()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(
        upstream.requests().len(),
        1,
        "a Retry-After this long is not waited for"
    );
}

#[actix_web::test]
async fn an_unreachable_upstream_is_502() {
    let app = spawn_app(&[("UPSTREAM_BASE_URL", "http://127.0.0.1:9/v1")]).await;
    let response = app.post("/v1/chat/completions", &chat()).await;
    assert_eq!(response.status(), 502);
    let body = error_body(response).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{body}"
    );
}

#[actix_web::test]
async fn silence_before_the_first_token_is_504() {
    let upstream = MockUpstream::start(vec![Script(vec![sse_head(), Step::Stall])]).await;
    let app = gateway_for(&upstream, &[("UPSTREAM_FIRST_TOKEN_TIMEOUT_SECS", "1")]).await;
    for path in ["/v1/chat/completions", "/api/chat"] {
        let response = app.post(path, &chat()).await;
        assert_eq!(response.status(), 504, "{path}");
        assert_eq!(
            error_body(response).await["error"]["code"],
            "upstream_timeout"
        );
    }
}

#[actix_web::test]
async fn a_json_answer_to_a_streaming_request_is_502_with_its_message() {
    let upstream = MockUpstream::start(vec![Script(vec![
        Step::Head(200, "application/json"),
        Step::Raw(r#"{"error":{"message":"model not loaded"}}"#.into()),
    ])])
    .await;
    let app = gateway_for(&upstream, &[]).await;
    let response = app.post("/v1/chat/completions", &chat()).await;
    assert_eq!(response.status(), 502);
    assert!(
        error_body(response).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model not loaded")
    );
}

#[actix_web::test]
async fn an_event_stream_is_one_whatever_the_case_and_parameters_of_its_media_type() {
    for content_type in ["Text/Event-Stream", "text/event-stream; charset=utf-8"] {
        let upstream = MockUpstream::start(vec![Script(vec![
            Step::Head(200, content_type),
            Step::Data(content_chunk("ok")),
            Step::Data("[DONE]".into()),
        ])])
        .await;
        let app = gateway_for(&upstream, &[]).await;
        let response = app.post("/v1/chat/completions", &chat()).await;
        assert_eq!(response.status(), 200, "{content_type}");
        let body = response.text().await.unwrap();
        assert!(body.contains(r#""content":"ok""#), "{content_type}: {body}");
    }
    for content_type in ["text/event-streaming", "text/plain"] {
        let upstream = MockUpstream::start(vec![Script(vec![
            Step::Head(200, content_type),
            Step::Raw("data: {}\n\n".into()),
        ])])
        .await;
        let app = gateway_for(&upstream, &[]).await;
        let response = app.post("/v1/chat/completions", &chat()).await;
        assert_eq!(response.status(), 502, "{content_type}");
    }
}

/// Scripts that fail after the first token, and what the error event must say.
fn mid_stream_failures() -> Vec<(&'static str, Script, &'static str)> {
    let start = || vec![sse_head(), Step::Data(content_chunk("partial"))];
    let with = |extra: Vec<Step>| Script(start().into_iter().chain(extra).collect());
    vec![
        (
            "garbage JSON",
            with(vec![Step::Data("{not json".into())]),
            "invalid event",
        ),
        ("a cut without [DONE]", with(vec![]), "without [DONE]"),
        (
            "OpenAI's error shape",
            with(vec![Step::Data(
                r#"{"error":{"message":"overloaded","type":"server_error"}}"#.into(),
            )]),
            "overloaded",
        ),
        (
            "vLLM's error shape",
            with(vec![Step::Data(
                r#"{"object":"error","message":"kv cache full","code":500}"#.into(),
            )]),
            "kv cache full",
        ),
        (
            "invalid UTF-8",
            with(vec![Step::Bytes(
                b"data: {\"a\":\"\xff\xfe\"}\n\n".to_vec(),
            )]),
            "UTF-8",
        ),
    ]
}

#[actix_web::test]
async fn a_mid_stream_failure_is_an_error_event_then_done_for_sdks() {
    for (what, script, needle) in mid_stream_failures() {
        let upstream = MockUpstream::start(vec![script]).await;
        let app = gateway_for(&upstream, &[]).await;
        let got = frames(app.post("/v1/chat/completions", &chat()).await).await;
        assert_eq!(
            got[0],
            format!("data: {}", content_chunk("partial")),
            "{what}"
        );
        assert_eq!(got.last().unwrap(), "data: [DONE]", "{what}: {got:?}");
        let error = &got[got.len() - 2];
        let error: Value = serde_json::from_str(error.strip_prefix("data: ").unwrap()).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{what}: {message}");
        assert!(
            error["error"]["type"].is_string() && error["error"]["code"].is_string(),
            "{what}"
        );
    }
}

#[actix_web::test]
async fn a_mid_stream_failure_is_an_error_event_then_stop_for_browsers() {
    for (what, script, needle) in mid_stream_failures() {
        let upstream = MockUpstream::start(vec![script]).await;
        let app = gateway_for(&upstream, &[]).await;
        let got = frames(app.post("/api/chat", &json!({"prompt": "hi"})).await).await;
        let n = got.len();
        assert_eq!(event_name(&got[n - 2]), Some("error"), "{what}: {got:?}");
        assert_eq!(data(&got[n - 2])["code"], "upstream_error", "{what}");
        assert!(
            data(&got[n - 2])["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{what}"
        );
        assert_eq!(event_name(&got[n - 1]), Some("stop"), "{what}");
        assert_eq!(data(&got[n - 1])["finish_reason"], "error", "{what}");
        assert_eq!(
            got.iter().filter(|f| event_name(f) == Some("stop")).count(),
            1
        );
    }
}

#[actix_web::test]
async fn a_stall_mid_stream_ends_with_a_timeout() {
    let upstream = MockUpstream::start(vec![Script(vec![
        sse_head(),
        Step::Data(content_chunk("a")),
        Step::Stall,
    ])])
    .await;
    let app = gateway_for(&upstream, &[("UPSTREAM_IDLE_TIMEOUT_SECS", "1")]).await;
    let got = frames(app.post("/api/chat", &json!({"prompt": "hi"})).await).await;
    let n = got.len();
    assert_eq!(data(&got[n - 2])["code"], "upstream_timeout");
    assert_eq!(data(&got[n - 1])["finish_reason"], "timeout");
    assert!(
        upstream.wait_for_drop(Duration::from_secs(5)).await,
        "the stalled upstream request was dropped"
    );

    let got = frames(app.post("/v1/chat/completions", &chat()).await).await;
    let error: Value =
        serde_json::from_str(got[got.len() - 2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_timeout");
}
