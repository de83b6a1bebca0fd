//! Request-rate limits, exactly: a burst passes, the next request is refused with honest
//! headers, and after the period it passes again. Clients are isolated; only requests that
//! start a generation count.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestApp, error_of, spawn_app};

const KEYS: &str = "alice-key,bob-key";

fn openai() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}], "mock": {"tokens": 1}})
}

fn browser() -> Value {
    json!({"prompt": "hi", "mock": {"tokens": 1}})
}

/// Starts a short generation on `path` as `key` and returns the answer.
async fn start(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    let body = if path.starts_with("/v1") {
        openai()
    } else {
        browser()
    };
    app.post_as(key, path, &body).await
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Checks a 429 from the per-client rate limit and returns its `Retry-After`.
async fn assert_rate_limited(response: reqwest::Response, rpm: &str) -> u64 {
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "x-ratelimit-limit"), Some(rpm));
    assert_eq!(header(&response, "x-ratelimit-remaining"), Some("0"));
    let retry_after: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    let error = error_of(response).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "rate_limit_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("RATE_LIMIT_RPM"),
        "{error}"
    );
    retry_after
}

#[actix_web::test]
async fn a_burst_passes_the_next_is_refused_and_after_the_period_one_passes_again() {
    let app = spawn_app(&[
        ("GATEWAY_API_KEYS", KEYS),
        ("RATE_LIMIT_RPM", "60"),
        ("RATE_LIMIT_BURST", "2"),
    ])
    .await;
    // All generation routes draw on the one bucket.
    assert_eq!(
        start(&app, "alice-key", "/v1/chat/completions")
            .await
            .status(),
        200
    );
    assert_eq!(
        start(&app, "alice-key", "/api/chat/messages")
            .await
            .status(),
        201
    );
    let refused = start(&app, "alice-key", "/api/chat").await;
    let retry_after = assert_rate_limited(refused, "60").await;
    assert_eq!(retry_after, 1, "60 a minute is one a second");

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(start(&app, "alice-key", "/api/chat").await.status(), 200);
    let again = start(&app, "alice-key", "/v1/chat/completions").await;
    assert_rate_limited(again, "60").await;
}

#[actix_web::test]
async fn one_limited_client_does_not_slow_another() {
    let app = spawn_app(&[
        ("GATEWAY_API_KEYS", KEYS),
        ("RATE_LIMIT_RPM", "6"),
        ("RATE_LIMIT_BURST", "2"),
    ])
    .await;
    for _ in 0..2 {
        assert_eq!(
            start(&app, "alice-key", "/api/chat/messages")
                .await
                .status(),
            201
        );
    }
    for _ in 0..20 {
        let refused = start(&app, "alice-key", "/api/chat/messages").await;
        let retry_after = assert_rate_limited(refused, "6").await;
        assert!((1..=10).contains(&retry_after), "{retry_after}");
    }
    // Bob's whole burst is his, at once.
    for _ in 0..2 {
        let started = tokio::time::Instant::now();
        let response = start(&app, "bob-key", "/v1/chat/completions").await;
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_rate_limited(start(&app, "bob-key", "/api/chat").await, "6").await;
}

async fn start_from(app: &TestApp, forwarded_for: &str) -> reqwest::StatusCode {
    app.client
        .post(app.url("/api/chat/messages"))
        .header("x-forwarded-for", forwarded_for)
        .json(&browser())
        .send()
        .await
        .unwrap()
        .status()
}

#[actix_web::test]
async fn behind_a_trusted_proxy_clients_are_told_apart_by_the_address_it_appended() {
    let app = spawn_app(&[
        ("TRUST_PROXY", "true"),
        ("RATE_LIMIT_RPM", "6"),
        ("RATE_LIMIT_BURST", "1"),
    ])
    .await;
    assert_eq!(start_from(&app, "203.0.113.1").await, 201);
    assert_eq!(start_from(&app, "203.0.113.1").await, 429);
    assert_eq!(start_from(&app, "203.0.113.2").await, 201, "another client");
    // Entries before the proxy's own are the client's to forge, so they change nothing.
    assert_eq!(start_from(&app, "198.51.100.9, 203.0.113.1").await, 429);
}

#[actix_web::test]
async fn without_trust_proxy_x_forwarded_for_is_ignored() {
    let app = spawn_app(&[("RATE_LIMIT_RPM", "6"), ("RATE_LIMIT_BURST", "1")]).await;
    assert_eq!(start_from(&app, "203.0.113.1").await, 201);
    assert_eq!(
        start_from(&app, "203.0.113.2").await,
        429,
        "same peer, same client"
    );
}

#[actix_web::test]
async fn the_global_limit_is_shared_by_all_clients() {
    let app = spawn_app(&[("GATEWAY_API_KEYS", KEYS), ("GLOBAL_RATE_LIMIT_RPS", "1")]).await;
    assert_eq!(
        start(&app, "alice-key", "/api/chat/messages")
            .await
            .status(),
        201
    );
    let refused = start(&app, "bob-key", "/api/chat/messages").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    // Bob is not the one over a limit of his: a number would mislead him.
    assert_eq!(header(&refused, "x-ratelimit-limit"), None);
    let error = error_of(refused).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("GLOBAL_RATE_LIMIT_RPS")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        start(&app, "bob-key", "/api/chat/messages").await.status(),
        201
    );
}

#[actix_web::test]
async fn reading_resuming_and_cancelling_a_stream_do_not_count() {
    let app = spawn_app(&[("RATE_LIMIT_RPM", "6"), ("RATE_LIMIT_BURST", "1")]).await;
    let created: Value = app
        .post("/api/chat/messages", &browser())
        .await
        .json()
        .await
        .unwrap();
    let url = created["stream_url"].as_str().unwrap();
    for _ in 0..5 {
        assert_eq!(app.get(url).await.status(), 200);
        let resumed = app
            .client
            .get(app.url(url))
            .header("last-event-id", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(resumed.status(), 200);
    }
    let deleted = app.client.delete(app.url(url)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get("/v1/models").await.status(), 200);
    assert_eq!(
        app.post("/api/chat/messages", &browser()).await.status(),
        429,
        "the one generation used the whole burst"
    );
}

#[actix_web::test]
async fn invalid_requests_do_not_count() {
    let app = spawn_app(&[("RATE_LIMIT_RPM", "6"), ("RATE_LIMIT_BURST", "1")]).await;
    for _ in 0..5 {
        let bad = app
            .post("/v1/chat/completions", &json!({"messages": []}))
            .await;
        assert_eq!(bad.status(), 400);
    }
    assert_eq!(
        app.post("/v1/chat/completions", &openai()).await.status(),
        200
    );
    assert_eq!(
        app.post("/v1/chat/completions", &openai()).await.status(),
        429
    );
}
