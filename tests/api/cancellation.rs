//! A client that goes away cancels its upstream request, as the upstream itself sees it.

use std::time::Duration;

use serde_json::json;

use crate::support::upstream::{MockUpstream, Script, Step, slow_answer, sse_head};
use crate::support::{SseReader, spawn_app, wait_until};

#[actix_web::test]
async fn a_dropped_openai_client_drops_the_upstream_mid_stream() {
    let upstream = MockUpstream::start(vec![slow_answer()]).await;
    // Heartbeats far away: the drop must be noticed without them.
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("HEARTBEAT_SECS", "600"),
    ])
    .await;
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut reader = SseReader::new(app.post("/v1/chat/completions", &body).await);
    reader.next_frame().await.unwrap();
    assert_eq!(upstream.drops(), 0);
    drop(reader);
    assert!(
        upstream.wait_for_drop(Duration::from_secs(5)).await,
        "upstream connection still open"
    );
}

#[actix_web::test]
async fn a_dropped_openai_client_drops_the_upstream_before_its_first_token() {
    let upstream = MockUpstream::start(vec![Script(vec![sse_head(), Step::Stall])]).await;
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("HEARTBEAT_SECS", "600"),
    ])
    .await;
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let request = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&body)
        .send();
    // The gateway is waiting for the first token and has sent nothing: give up on it.
    let gave_up = tokio::time::timeout(Duration::from_millis(500), request).await;
    assert!(
        gave_up.is_err(),
        "no answer is expected before the first token"
    );
    assert_eq!(upstream.requests().len(), 1);
    assert!(
        upstream.wait_for_drop(Duration::from_secs(5)).await,
        "upstream connection still open"
    );
    // The gateway closes the upstream connection and gives the slot back as it drops the
    // request, in that order, on its own thread: the slot may lag the drop seen above.
    wait_until("the stream's slot given back", || {
        app.shared.limits.active() == 0
    })
    .await;
}

#[actix_web::test]
async fn a_browser_generation_with_no_reader_is_cancelled_after_the_grace_period() {
    let upstream = MockUpstream::start(vec![slow_answer()]).await;
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("RESUME_GRACE_SECS", "1"),
    ])
    .await;
    let response = app.post("/api/chat", &json!({"prompt": "x"})).await;
    let id = response.headers()["x-stream-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut reader = SseReader::new(response);
    reader.next_frame().await.unwrap();
    drop(reader);
    assert!(
        upstream.wait_for_drop(Duration::from_secs(10)).await,
        "the generation went on without readers"
    );
    let entry = app.shared.registry.get(&id).expect("kept for resume");
    let frames = crate::support::frames(app.get(&format!("/api/chat/streams/{id}")).await).await;
    let stop = crate::support::data(frames.last().unwrap());
    assert_eq!(stop["finish_reason"], "cancelled", "{frames:?}");
    assert!(entry.is_finished());
}
