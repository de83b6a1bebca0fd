//! Graceful shutdown of the real binary on a real SIGTERM: readiness turns 503, new
//! generations are refused, a stream with time left finishes, one that outlives
//! `SHUTDOWN_GRACE_SECS` is ended with `shutting_down`, and the process exits 0.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::process::Gateway;
use crate::support::{SseReader, data, event_name};

const GRACE_SECS: u64 = 3;

async fn start() -> Gateway {
    Gateway::start(&[("SHUTDOWN_GRACE_SECS", &GRACE_SECS.to_string())]).await
}

/// The mock model's pace for a stream: `tokens` at ten a second.
fn paced(tokens: u64, mut body: Value) -> Value {
    body["mock"] = json!({"tokens": tokens, "tokens_per_sec": 10});
    body
}

async fn open(gateway: &Gateway, path: &str, body: &Value) -> SseReader {
    let response = gateway
        .client
        .post(gateway.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    SseReader::new(response)
}

/// SIGTERM, then the gateway's own word that draining has begun.
async fn terminate(gateway: &Gateway) -> Instant {
    let sent = Instant::now();
    gateway.terminate();
    gateway
        .wait_for_log("draining", |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        })
        .await;
    sent
}

/// While draining: not ready, no new generations on any route; health and reads still work.
async fn assert_draining(gateway: &Gateway) {
    let get = |path: &'static str| gateway.client.get(gateway.url(path)).send();
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["status"],
        "shutting_down"
    );
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let prompt = json!({"prompt": "late", "messages": [{"role": "user", "content": "late"}]});
    for path in ["/api/chat", "/api/chat/messages", "/v1/chat/completions"] {
        let refused = gateway
            .client
            .post(gateway.url(path))
            .json(&prompt)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503, "{path}");
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shutting down"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn on_sigterm_a_browser_stream_with_time_left_finishes_and_a_longer_one_is_cut() {
    let mut gateway = start().await;
    let mut short = open(&gateway, "/api/chat", &paced(5, json!({"prompt": "short"}))).await;
    let mut long = open(
        &gateway,
        "/api/chat",
        &paced(10_000, json!({"prompt": "long"})),
    )
    .await;
    for reader in [&mut short, &mut long] {
        assert_eq!(reader.next_frame().await.unwrap(), "retry: 2000");
        assert!(reader.next_frame().await.unwrap().contains("\"content\""));
    }

    let sent = terminate(&gateway).await;
    assert_draining(&gateway).await;

    let short = short.all().await;
    let stop = short.last().unwrap();
    assert_eq!(event_name(stop), Some("stop"), "{short:?}");
    assert_eq!(data(stop)["finish_reason"], "stop");
    assert!(short.iter().all(|f| event_name(f) != Some("error")));
    assert!(
        sent.elapsed() < Duration::from_secs(GRACE_SECS),
        "finished within the grace period"
    );

    let long = long.all().await;
    let cut_at = sent.elapsed();
    let [.., error, stop] = long.as_slice() else {
        panic!("{long:?}")
    };
    assert_eq!(event_name(error), Some("error"));
    assert_eq!(data(error)["code"], "shutting_down");
    assert_eq!(event_name(stop), Some("stop"));
    assert_eq!(data(stop)["finish_reason"], "error");
    assert!(
        cut_at >= Duration::from_secs(GRACE_SECS),
        "cut after {cut_at:?}, before the grace period was over"
    );

    let status = gateway.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let summary = gateway
        .wait_for_log("the cut stream's summary", |l| {
            l["detail"] == "shutting_down" && l["route"] == "/api/chat"
        })
        .await;
    assert_eq!(summary["finish_reason"], "error");
}

#[tokio::test]
async fn on_sigterm_an_openai_stream_with_time_left_finishes_and_a_longer_one_is_cut() {
    let mut gateway = start().await;
    let body = |tokens| {
        paced(
            tokens,
            json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let mut short = open(&gateway, "/v1/chat/completions", &body(5)).await;
    let mut long = open(&gateway, "/v1/chat/completions", &body(10_000)).await;
    for reader in [&mut short, &mut long] {
        assert!(reader.next_frame().await.unwrap().starts_with("data: {"));
    }

    let sent = terminate(&gateway).await;
    assert_draining(&gateway).await;

    let short = short.all().await;
    assert_eq!(short.last().unwrap(), "data: [DONE]");
    assert!(short.iter().all(|f| !f.contains("\"error\"")), "{short:?}");
    assert!(
        short
            .iter()
            .any(|f| f.contains("\"finish_reason\":\"stop\""))
    );
    assert!(
        sent.elapsed() < Duration::from_secs(GRACE_SECS),
        "finished within the grace period"
    );

    let long = long.all().await;
    let cut_at = sent.elapsed();
    let [.., error, done] = long.as_slice() else {
        panic!("{long:?}")
    };
    let error: Value = serde_json::from_str(error.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "shutting_down", "{error}");
    assert!(error["error"]["message"].is_string());
    assert_eq!(done, "data: [DONE]");
    assert!(
        cut_at >= Duration::from_secs(GRACE_SECS),
        "cut after {cut_at:?}, before the grace period was over"
    );

    let status = gateway.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn an_idle_gateway_exits_at_once_on_sigterm() {
    let mut gateway = start().await;
    exits_before_the_grace_period(
        &mut gateway,
        "waited out the grace period with nothing to drain",
    )
    .await;
}

/// SIGTERM, then a clean exit well before `GRACE_SECS`; `why` says what a late exit means.
async fn exits_before_the_grace_period(gateway: &mut Gateway, why: &str) {
    let sent = Instant::now();
    gateway.terminate();
    let status = gateway.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert!(
        sent.elapsed() < Duration::from_secs(GRACE_SECS),
        "{why} (exited after {:?})",
        sent.elapsed()
    );
}

/// A client's idle keep-alive connection does not hold the exit up: the server's drain signal
/// reaches the connection (it is polled only once it has fired, vendored actix-http patch 6)
/// and closes it, well before actix's own keep-alive and shutdown timeouts (5 s each).
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_once_on_sigterm() {
    let mut gateway = start().await;
    let health = gateway
        .client
        .get(gateway.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    health.bytes().await.unwrap();
    exits_before_the_grace_period(
        &mut gateway,
        "the idle keep-alive connection held the exit up",
    )
    .await;
}
