//! An `https://` upstream, reached by the real binary over TLS as a deployment reaches
//! OpenAI: trusted through `SSL_CERT_FILE`, offered HTTP/1.1 only (the gateway's own
//! connections, not reqwest's HTTP/2), cancelled when the client goes, refused when its
//! certificate is not trusted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::Gateway;
use crate::support::upstream::{self, MockUpstream};
use crate::support::{SseReader, error_of, frames, openai_text};

fn request() -> Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

async fn gateway_trusting(upstream: &MockUpstream) -> Gateway {
    let certificate = upstream.certificate.as_ref().unwrap().to_str().unwrap();
    Gateway::start(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("UPSTREAM_API_KEY", "sk-upstream"),
        ("UPSTREAM_RETRIES", "0"),
        ("SSL_CERT_FILE", certificate),
    ])
    .await
}

async fn post(gateway: &Gateway) -> reqwest::Response {
    let url = gateway.url("/v1/chat/completions");
    gateway
        .client
        .post(url)
        .json(&request())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_https_upstream_streams_over_http_1_1() {
    let answer = upstream::answer(&["Hel", "lo", "!"], Duration::from_millis(10));
    let upstream = MockUpstream::start_tls(vec![answer]).await;
    let gateway = gateway_trusting(&upstream).await;
    let response = post(&gateway).await;
    assert_eq!(response.status(), 200);
    let frames = frames(response).await;
    assert_eq!(openai_text(&frames), "Hello!");
    assert_eq!(frames.last().map(String::as_str), Some("data: [DONE]"));
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].offered, ["http/1.1"], "offered by ALPN");
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some("Bearer sk-upstream")
    );
}

#[tokio::test]
async fn a_dropped_client_drops_its_https_upstream() {
    let upstream = MockUpstream::start_tls(vec![upstream::slow_answer()]).await;
    let gateway = gateway_trusting(&upstream).await;
    let mut reader = SseReader::new(post(&gateway).await);
    reader.next_frame().await.unwrap();
    assert_eq!(upstream.drops(), 0);
    drop(reader);
    assert!(
        upstream.wait_for_drop(Duration::from_secs(5)).await,
        "the upstream connection is still open"
    );
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_is_not_trusted_is_a_502() {
    let answer = upstream::answer(&["never"], Duration::ZERO);
    let upstream = MockUpstream::start_tls(vec![answer]).await;
    // No SSL_CERT_FILE: the system's roots, which do not know this certificate.
    let gateway = Gateway::start(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("UPSTREAM_RETRIES", "0"),
    ])
    .await;
    let response = post(&gateway).await;
    assert_eq!(response.status(), 502);
    let error = error_of(response).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
    assert!(upstream.requests().is_empty(), "a request went out");
}
