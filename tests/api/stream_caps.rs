//! Concurrent-generation caps: per client (429) and in total (503). A slot comes back however
//! its stream ended: finished, failed, cancelled by DELETE, or its client gone.

use serde_json::{Value, json};

use crate::support::{SseReader, TestApp, error_of, frames, spawn_app, wait_until};

const KEYS: &str = "alice-key,bob-key";

async fn gateway(extra: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("GATEWAY_API_KEYS", KEYS), ("MAX_STREAMS_PER_CLIENT", "1")];
    pairs.extend_from_slice(extra);
    spawn_app(&pairs).await
}

/// A mock answer that takes a while: 40 tokens at 20 a second.
fn slow(extra: Value) -> Value {
    let mut mock = json!({"tokens": 40, "tokens_per_sec": 20});
    if let (Some(mock), Value::Object(extra)) = (mock.as_object_mut(), extra) {
        mock.extend(extra);
    }
    json!({"prompt": "take your time", "mock": mock})
}

async fn assert_busy(app: &TestApp, key: &str) {
    let refused = app.post_as(key, "/api/chat", &slow(json!({}))).await;
    assert_eq!(refused.status(), 429);
    let headers = refused.headers();
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-ratelimit-limit"], "1");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let error = error_of(refused).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("MAX_STREAMS_PER_CLIENT")
    );
}

async fn assert_slot_free_again(app: &TestApp) {
    wait_until("the slot given back", || app.shared.limits.active() == 0).await;
    let next = app
        .post_as(
            "alice-key",
            "/api/chat",
            &json!({"prompt": "again", "mock": {"tokens": 1}}),
        )
        .await;
    assert_eq!(next.status(), 200);
}

#[actix_web::test]
async fn a_finished_stream_gives_its_slot_back() {
    let app = gateway(&[]).await;
    let running = app
        .post_as("alice-key", "/api/chat", &slow(json!({"tokens": 5})))
        .await;
    assert_eq!(running.status(), 200);
    assert_busy(&app, "alice-key").await;
    let got = frames(running).await;
    assert!(got.last().unwrap().contains("\"finish_reason\":\"stop\""));
    assert_slot_free_again(&app).await;
}

#[actix_web::test]
async fn a_failed_stream_gives_its_slot_back() {
    let app = gateway(&[]).await;
    let running = app
        .post_as("alice-key", "/api/chat", &slow(json!({"fail_after": 3})))
        .await;
    assert_eq!(running.status(), 200);
    assert_busy(&app, "alice-key").await;
    let got = frames(running).await;
    assert!(got.iter().any(|f| f.contains("event: error")), "{got:?}");
    assert_slot_free_again(&app).await;
}

#[actix_web::test]
async fn a_stream_cancelled_by_delete_gives_its_slot_back() {
    let app = gateway(&[]).await;
    let created: Value = app
        .post_as(
            "alice-key",
            "/api/chat/messages",
            &slow(json!({"stall_after": 1})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_busy(&app, "alice-key").await;
    let url = app.url(created["stream_url"].as_str().unwrap());
    assert_eq!(app.client.delete(url).send().await.unwrap().status(), 204);
    assert_slot_free_again(&app).await;
}

#[actix_web::test]
async fn a_client_that_goes_away_gives_its_slot_back() {
    let app = gateway(&[("HEARTBEAT_SECS", "600")]).await;
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "hi"}],
                      "mock": {"tokens": 1000, "tokens_per_sec": 20}});
    let running = app
        .post_as("alice-key", "/v1/chat/completions", &body)
        .await;
    let mut reader = SseReader::new(running);
    reader.next_frame().await.unwrap();
    assert_busy(&app, "alice-key").await;
    drop(reader);
    assert_slot_free_again(&app).await;
}

#[actix_web::test]
async fn one_clients_streams_do_not_use_up_anothers_slots() {
    let app = gateway(&[]).await;
    let _running = app
        .post_as("alice-key", "/api/chat", &slow(json!({"stall_after": 1})))
        .await;
    assert_busy(&app, "alice-key").await;
    let bob = app
        .post_as(
            "bob-key",
            "/api/chat",
            &json!({"prompt": "x", "mock": {"tokens": 2}}),
        )
        .await;
    assert_eq!(bob.status(), 200);
    assert!(frames(bob).await.last().unwrap().contains("\"stop\""));
}

#[actix_web::test]
async fn the_total_cap_is_a_503_for_everyone() {
    let app = gateway(&[("MAX_STREAMS", "1")]).await;
    let _running = app
        .post_as("alice-key", "/api/chat", &slow(json!({"stall_after": 1})))
        .await;
    let refused = app.post_as("bob-key", "/api/chat", &slow(json!({}))).await;
    assert_eq!(refused.status(), 503);
    let error = error_of(refused).await;
    assert!(
        error["message"].as_str().unwrap().contains("MAX_STREAMS"),
        "{error}"
    );
}

#[actix_web::test]
async fn a_request_refused_for_concurrency_does_not_count_toward_the_rate() {
    // Ten seconds a cell: the burst of two is all there is for the test's duration.
    let app = gateway(&[("RATE_LIMIT_RPM", "6"), ("RATE_LIMIT_BURST", "2")]).await;
    let created: Value = app
        .post_as(
            "alice-key",
            "/api/chat/messages",
            &slow(json!({"stall_after": 1})),
        )
        .await
        .json()
        .await
        .unwrap();
    for _ in 0..5 {
        assert_busy(&app, "alice-key").await;
    }
    let url = app.url(created["stream_url"].as_str().unwrap());
    app.client.delete(url).send().await.unwrap();
    assert_slot_free_again(&app).await;
}
