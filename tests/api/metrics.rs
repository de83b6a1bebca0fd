//! `/metrics`: the exposition parses, and every metric moves as requests flow.

use std::time::Duration;

use serde_json::json;

use crate::support::upstream::{self, MockUpstream, Script, Step, content_chunk, sse_head};
use crate::support::{SseReader, frames, spawn_app};

const REQUESTS: &str = "streamgate_requests_total";
const ACTIVE: &str = "streamgate_active_streams";
const TTFT: &str = "streamgate_time_to_first_token_seconds";
const CANCELLED: &str = "streamgate_stream_cancellations_total";

/// One token, then silence until the gateway hangs up.
fn first_token_then_stall() -> Script {
    Script(vec![
        sse_head(),
        Step::Data(content_chunk("tok")),
        Step::Stall,
    ])
}

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

#[actix_web::test]
async fn requests_are_counted_by_route_pattern_with_unknown_paths_under_one_label() {
    let app = spawn_app(&[]).await;
    let before = app.scrape().await;
    assert_eq!(
        before.value(REQUESTS, &[("route", "/healthz"), ("status", "200")]),
        0.0
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/no/such/path").await.status(), 404);
    assert_eq!(app.get("/another-one").await.status(), 404);
    let unknown = format!("/api/chat/streams/{}", "ab".repeat(16));
    assert_eq!(app.get(&unknown).await.status(), 404);

    let after = app.scrape().await;
    assert_eq!(
        after.value(REQUESTS, &[("route", "/healthz"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        after.value(REQUESTS, &[("route", "unmatched"), ("status", "404")]),
        2.0
    );
    assert_eq!(
        after.value(
            REQUESTS,
            &[("route", "/api/chat/streams/{id}"), ("status", "404")]
        ),
        1.0
    );
    // The first scrape is counted too, once it was answered.
    assert_eq!(
        after.value(REQUESTS, &[("route", "/metrics"), ("status", "200")]),
        1.0
    );
    let routes = after.label_values(REQUESTS, "route");
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("no/such") && !r.contains("abab")),
        "{routes:?}"
    );
}

#[actix_web::test]
async fn a_finished_stream_counts_its_tokens_and_latencies_under_its_model() {
    let upstream = MockUpstream::start(vec![upstream::answer(
        &["a", "b", "c"],
        Duration::from_millis(10),
    )])
    .await;
    let app = spawn_app(&[("UPSTREAM_BASE_URL", &upstream.base_url)]).await;
    let got = frames(app.post("/v1/chat/completions", &chat("gpt-test")).await).await;
    assert_eq!(got.last().unwrap(), "data: [DONE]");

    let m = app.scrape().await;
    assert_eq!(
        m.value(
            REQUESTS,
            &[("route", "/v1/chat/completions"), ("status", "200")]
        ),
        1.0
    );
    // The scripted upstream reports 5 prompt tokens and one per chunk.
    assert_eq!(
        m.value("streamgate_tokens_total", &[("kind", "prompt")]),
        5.0
    );
    assert_eq!(
        m.value("streamgate_tokens_total", &[("kind", "completion")]),
        3.0
    );
    assert_eq!(
        m.value(&format!("{TTFT}_count"), &[("model", "gpt-test")]),
        1.0
    );
    assert_eq!(
        m.value(
            &format!("{TTFT}_bucket"),
            &[("model", "gpt-test"), ("le", "+Inf")]
        ),
        1.0
    );
    assert_eq!(m.value("streamgate_overhead_seconds_count", &[]), 1.0);
    assert_eq!(
        m.value("streamgate_inter_token_seconds_count", &[]),
        2.0,
        "three tokens, two gaps"
    );
    assert!(m.value("streamgate_inter_token_seconds_sum", &[]) >= 0.015);
    assert_eq!(m.value(ACTIVE, &[]), 0.0);
    for reason in [
        "client_gone",
        "deleted",
        "no_reader",
        "shutting_down",
        "other",
    ] {
        assert_eq!(m.value(CANCELLED, &[("reason", reason)]), 0.0, "{reason}");
    }
}

#[actix_web::test]
async fn the_overhead_leaves_out_the_upstreams_own_time_to_first_token() {
    // The mock model waits 300 ms before its first token: that is the upstream's time.
    let app = spawn_app(&[("MOCK_TTFT_MS", "300")]).await;
    let got = frames(app.post("/v1/chat/completions", &chat("mock")).await).await;
    assert_eq!(got.last().unwrap(), "data: [DONE]");
    let m = app.scrape().await;
    let ttft = |le| m.value(&format!("{TTFT}_bucket"), &[("model", "mock"), ("le", le)]);
    assert_eq!(ttft("0.25"), 0.0, "the first token took at least 300 ms");
    assert_eq!(ttft("+Inf"), 1.0);
    let overhead = |le| m.value("streamgate_overhead_seconds_bucket", &[("le", le)]);
    assert_eq!(overhead("0.25"), 1.0, "{}", m.text);
    assert!(m.value("streamgate_overhead_seconds_sum", &[]) < 0.25);
}

#[actix_web::test]
async fn active_streams_go_up_while_a_stream_runs_and_down_when_its_client_leaves() {
    let upstream = MockUpstream::start(vec![first_token_then_stall()]).await;
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("HEARTBEAT_SECS", "600"),
    ])
    .await;
    assert_eq!(app.scrape().await.value(ACTIVE, &[]), 0.0);
    let mut reader = SseReader::new(app.post("/v1/chat/completions", &chat("m")).await);
    reader.next_frame().await.unwrap();
    assert_eq!(app.scrape().await.value(ACTIVE, &[]), 1.0);

    drop(reader);
    let m = app
        .scrape_until("the stream ended as client_gone", |m| {
            m.value(ACTIVE, &[]) == 0.0 && m.value(CANCELLED, &[("reason", "client_gone")]) == 1.0
        })
        .await;
    assert_eq!(m.value(CANCELLED, &[("reason", "deleted")]), 0.0);
    // It was answered 200 before the client left.
    assert_eq!(
        m.value(
            REQUESTS,
            &[("route", "/v1/chat/completions"), ("status", "200")]
        ),
        1.0
    );
}

#[actix_web::test]
async fn a_deleted_stream_counts_as_a_deleted_cancellation() {
    let upstream = MockUpstream::start(vec![first_token_then_stall()]).await;
    let app = spawn_app(&[("UPSTREAM_BASE_URL", &upstream.base_url)]).await;
    let response = app
        .post("/api/chat/messages", &json!({"prompt": "x"}))
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.scrape().await.value(ACTIVE, &[]), 1.0);
    let deleted = app
        .client
        .delete(app.url(&format!("/api/chat/streams/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let m = app
        .scrape_until("the stream ended as deleted", |m| {
            m.value(ACTIVE, &[]) == 0.0 && m.value(CANCELLED, &[("reason", "deleted")]) == 1.0
        })
        .await;
    assert_eq!(m.value(CANCELLED, &[("reason", "client_gone")]), 0.0);
    assert_eq!(
        m.value(
            REQUESTS,
            &[("route", "/api/chat/streams/{id}"), ("status", "204")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            REQUESTS,
            &[("route", "/api/chat/messages"), ("status", "201")]
        ),
        1.0
    );
}

#[actix_web::test]
async fn refusals_are_counted_by_the_limit_that_refused() {
    let upstream = MockUpstream::start(vec![first_token_then_stall()]).await;
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("MAX_STREAMS_PER_CLIENT", "1"),
    ])
    .await;
    let mut running = SseReader::new(app.post("/api/chat", &json!({"prompt": "a"})).await);
    running.next_frame().await.unwrap();
    let refused = app.post("/api/chat", &json!({"prompt": "b"})).await;
    assert_eq!(refused.status(), 429);
    let m = app.scrape().await;
    let limited = |limit| m.value("streamgate_rate_limited_total", &[("limit", limit)]);
    assert_eq!(limited("client_streams"), 1.0);
    assert_eq!(limited("total_streams"), 0.0);
    assert_eq!(limited("client_rate"), 0.0);
    assert_eq!(limited("global_rate"), 0.0);
    assert_eq!(
        m.value(REQUESTS, &[("route", "/api/chat"), ("status", "429")]),
        1.0
    );
    // A refused request never started a generation, so nothing was cancelled.
    assert_eq!(m.value(CANCELLED, &[("reason", "client_gone")]), 0.0);

    let full = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("MAX_STREAMS", "1"),
    ])
    .await;
    let mut running = SseReader::new(full.post("/api/chat", &json!({"prompt": "a"})).await);
    running.next_frame().await.unwrap();
    assert_eq!(
        full.post("/api/chat", &json!({"prompt": "b"}))
            .await
            .status(),
        503
    );
    let m = full.scrape().await;
    assert_eq!(
        m.value(
            "streamgate_rate_limited_total",
            &[("limit", "total_streams")]
        ),
        1.0
    );
}

#[actix_web::test]
async fn every_failed_upstream_attempt_is_counted_by_kind_retries_included() {
    let upstream = MockUpstream::start(vec![upstream::refusal(500, "boom")]).await;
    let app = spawn_app(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("UPSTREAM_RETRIES", "1"),
    ])
    .await;
    let response = app.post("/v1/chat/completions", &chat("m")).await;
    assert_eq!(response.status(), 502);
    let m = app.scrape().await;
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(
        m.value("streamgate_upstream_errors_total", &[("kind", "status")]),
        2.0
    );
    assert_eq!(
        m.value("streamgate_upstream_errors_total", &[("kind", "transport")]),
        0.0
    );
    assert_eq!(
        m.value(
            REQUESTS,
            &[("route", "/v1/chat/completions"), ("status", "502")]
        ),
        1.0
    );
    // Refused before any token: no tokens were spent.
    assert_eq!(
        m.value("streamgate_tokens_total", &[("kind", "prompt")]),
        0.0
    );
    assert!(!m.text.contains(&format!("{TTFT}_count{{model=\"m\"}} 1")));
}

#[actix_web::test]
async fn every_metric_the_design_names_is_exposed_from_the_start() {
    let app = spawn_app(&[]).await;
    let m = app.scrape().await;
    for name in [
        ACTIVE,
        "streamgate_overhead_seconds_count",
        "streamgate_inter_token_seconds_count",
        "streamgate_tokens_total",
        "streamgate_upstream_errors_total",
        "streamgate_rate_limited_total",
        CANCELLED,
    ] {
        assert!(m.has(name), "{name} missing:\n{}", m.text);
    }
    for name in [REQUESTS, TTFT] {
        assert!(
            m.text.contains(&format!("# TYPE {name} ")),
            "{name} undeclared:\n{}",
            m.text
        );
    }
}
