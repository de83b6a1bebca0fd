//! `/api/chat`: the browser events, exactly, event by event.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::upstream::{MockUpstream, Script, Step, content_chunk, finish_chunk, sse_head};
use crate::support::{SseReader, browser_text, data, event_name, frames, spawn_app};

#[actix_web::test]
async fn a_browser_stream_has_retry_numbered_deltas_and_one_stop() {
    let app = spawn_app(&[]).await;
    let response = app
        .post(
            "/api/chat",
            &json!({"prompt": "hello there", "mock": {"tokens": 3}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    let stream_id = response.headers()["x-stream-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(stream_id.len(), 32);
    let got = frames(response).await;
    assert_eq!(
        got,
        vec![
            "retry: 2000".to_owned(),
            "id: 1\ndata: {\"content\":\"You\"}".to_owned(),
            "id: 2\ndata: {\"content\":\" asked\"}".to_owned(),
            "id: 3\ndata: {\"content\":\" about\"}".to_owned(),
            format!(
                "id: 4\nevent: stop\ndata: {{\"finish_reason\":\"stop\",\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}},\"stream_id\":\"{stream_id}\"}}"
            ),
        ]
    );
}

#[actix_web::test]
async fn reasoning_and_tool_calls_reach_the_browser_as_they_are() {
    let reasoning = json!({"choices":[{"index":0,"delta":{"reasoning":"hmm"}}]}).to_string();
    let tools = json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}}]}}]}).to_string();
    let upstream = MockUpstream::start(vec![Script(vec![
        sse_head(),
        Step::Data(reasoning),
        Step::Data(tools),
        Step::Data(finish_chunk("tool_calls")),
        Step::Data("[DONE]".into()),
    ])])
    .await;
    let app = spawn_app(&[("UPSTREAM_BASE_URL", &upstream.base_url)]).await;
    let got = frames(app.post("/api/chat", &json!({"prompt": "x"})).await).await;
    assert_eq!(data(&got[1]), json!({"reasoning": "hmm"}));
    assert_eq!(
        data(&got[2]),
        json!({"tool_calls": [{"index":0,"function":{"arguments":"{\"x\":1}"}}]})
    );
    let stop = data(&got[3]);
    assert_eq!(stop["finish_reason"], "tool_calls");
    assert_eq!(
        stop["usage"]["estimated"], true,
        "no usage upstream: an estimate, flagged"
    );
    assert_eq!(stop["usage"]["completion_tokens"], 2);
}

#[actix_web::test]
async fn max_tokens_ends_with_length() {
    let app = spawn_app(&[]).await;
    let got = frames(
        app.post("/api/chat", &json!({"prompt": "x", "max_tokens": 2}))
            .await,
    )
    .await;
    assert_eq!(got.len(), 4);
    assert_eq!(data(&got[3])["finish_reason"], "length");
    assert_eq!(data(&got[3])["usage"]["completion_tokens"], 2);
}

#[actix_web::test]
async fn an_idle_stream_carries_pings() {
    let upstream = MockUpstream::start(vec![Script(vec![
        sse_head(),
        Step::Data(content_chunk("a")),
        Step::Sleep(Duration::from_millis(2300)),
        Step::Data(finish_chunk("stop")),
        Step::Data("[DONE]".into()),
    ])])
    .await;
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("HEARTBEAT_SECS", "1"),
    ])
    .await;
    let got = frames(app.post("/api/chat", &json!({"prompt": "x"})).await).await;
    assert!(
        got.iter().filter(|f| *f == ": ping").count() >= 2,
        "{got:?}"
    );
    assert_eq!(browser_text(&got), "a");
    assert_eq!(event_name(got.last().unwrap()), Some("stop"));
}

#[actix_web::test]
async fn an_upstream_refusal_before_the_first_token_is_a_real_status_on_api_chat() {
    let upstream =
        MockUpstream::start(vec![crate::support::upstream::refusal(401, "no such key")]).await;
    let app = spawn_app(&[("UPSTREAM_BASE_URL", &upstream.base_url)]).await;
    let response = app.post("/api/chat", &json!({"prompt": "x"})).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such key")
    );
}

#[actix_web::test]
async fn events_arrive_as_they_are_produced_not_batched() {
    let app = spawn_app(&[]).await;
    let response = app
        .post(
            "/api/chat",
            &json!({"prompt": "x", "mock": {"tokens": 4, "tokens_per_sec": 5}}),
        )
        .await;
    let mut reader = SseReader::new(response);
    assert_eq!(reader.next_frame().await.unwrap(), "retry: 2000");
    let mut arrivals = Vec::new();
    while let Some(frame) = reader.next_frame().await {
        arrivals.push((tokio::time::Instant::now(), frame));
    }
    assert_eq!(arrivals.len(), 5);
    // 5 tokens/s: the 4 deltas span ~600 ms; a batch would arrive all at once.
    let spread = arrivals[3].0 - arrivals[0].0;
    assert!(
        spread >= Duration::from_millis(450),
        "deltas arrived within {spread:?}"
    );
}
