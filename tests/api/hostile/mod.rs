//! Hostile input: every malformed, oversized, abandoned or unknown request gets its
//! documented 4xx with a message that names the problem, while another stream, running
//! alongside on the same gateway, flows on and completes intact.

mod bodies;
mod http;

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{TestApp, browser_text, data, error_of, event_name, frames, spawn_app};

/// The battery's gateway: bodies up to 4 MiB, so that 100,000 tiny messages get parsed.
pub async fn gateway() -> TestApp {
    spawn_app(&[("MAX_BODY_BYTES", "4194304")]).await
}

const SLOW_TOKENS: u64 = 40;

fn slow_prompt(per_sec: u64) -> Value {
    json!({"prompt": "keep flowing", "mock": {"tokens": SLOW_TOKENS, "tokens_per_sec": per_sec}})
}

/// Runs `attack` while a slow stream (40 tokens over 2 s) flows on the same gateway, then
/// checks that the stream got every event once, in order, with the right text and one stop.
pub async fn alongside_a_slow_stream(app: &TestApp, attack: impl Future<Output = ()>) {
    let expected = browser_text(&frames(app.post("/api/chat", &slow_prompt(0)).await).await);
    let started = Instant::now();
    let response = app.post("/api/chat", &slow_prompt(20)).await;
    assert_eq!(response.status(), 200);
    let ((), got) = tokio::join!(attack, frames(response));
    let took = started.elapsed();

    assert_eq!(got[0], "retry: 2000");
    let events = &got[1..];
    assert_eq!(events.len() as u64, SLOW_TOKENS + 1, "{got:?}");
    for (n, event) in events.iter().enumerate() {
        assert!(event.starts_with(&format!("id: {}\n", n + 1)), "{event}");
    }
    assert!(events.iter().all(|e| event_name(e) != Some("error")));
    assert_eq!(browser_text(&got), expected);
    let stop = events.last().unwrap();
    assert_eq!(event_name(stop), Some("stop"));
    assert_eq!(data(stop)["finish_reason"], "stop");
    // Two seconds of pacing; the attack may slow it a little, never stall it.
    assert!(took < Duration::from_secs(10), "the stream took {took:?}");
}

pub async fn send_bytes(app: &TestApp, path: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Checks an OpenAI-shaped error answer: its status and that the message says `needle`.
pub async fn assert_refused(what: &str, response: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(response.status(), status, "{what}");
    let error = error_of(response).await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{what}: {message:?} lacks {needle:?}"
    );
    assert!(
        error["type"].is_string() && error["code"].is_string(),
        "{what}: {error}"
    );
}

pub fn chat_with(extra: Value) -> Vec<u8> {
    let mut body = json!({"messages": [{"role": "user", "content": "hi"}], "mock": {"tokens": 1}});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body.to_string().into_bytes()
}

pub fn many_messages(count: usize, last: &str) -> Vec<u8> {
    let mut body = String::from(r#"{"mock":{"tokens":2},"messages":["#);
    for _ in 1..count {
        body.push_str(r#"{"role":"user","content":"a"},"#);
    }
    body.push_str(last);
    body.push_str("]}");
    body.into_bytes()
}
