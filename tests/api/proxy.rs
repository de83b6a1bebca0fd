//! A proxy in the environment is honoured: `HTTP_PROXY` for a plain-http upstream, and
//! `HTTPS_PROXY` (a `CONNECT` tunnel, TLS end to end) for an `https://` one. The gateway's own
//! connections step aside for reqwest, which uses it.

use std::time::Duration;

use serde_json::json;

use crate::support::connect_proxy::ConnectProxy;
use crate::support::process::Gateway;
use crate::support::upstream::{self, MockUpstream};
use crate::support::{frames, openai_text};

async fn post_chat(gateway: &Gateway) -> reqwest::Response {
    let request = json!({"model": "m", "stream": true,
                         "messages": [{"role": "user", "content": "hi"}]});
    let url = gateway.url("/v1/chat/completions");
    gateway
        .client
        .post(url)
        .json(&request)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_proxy_in_the_environment_carries_the_upstream_requests() {
    // The scripted upstream plays the proxy: it answers whatever it is asked for.
    let proxy = MockUpstream::start(vec![upstream::answer(&["Hi", "!"], Duration::ZERO)]).await;
    let proxy_url = proxy.base_url.trim_end_matches("/v1").to_owned();
    let gateway = Gateway::start(&[
        ("UPSTREAM_BASE_URL", "http://upstream.invalid/v1"),
        ("HTTP_PROXY", &proxy_url),
    ])
    .await;
    let response = post_chat(&gateway).await;
    assert_eq!(response.status(), 200);
    assert_eq!(openai_text(&frames(response).await), "Hi!");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path, "http://upstream.invalid/v1/chat/completions",
        "asked of the proxy in absolute form"
    );
}

#[tokio::test]
async fn an_https_upstream_is_reached_through_a_connect_tunnel() {
    // HTTP/1.1 only: reqwest would pick h2, which the scripted upstream does not speak.
    let answer = upstream::answer(&["Hel", "lo", "!"], Duration::from_millis(5));
    let upstream = MockUpstream::start_tls_offering(vec![answer], &[b"http/1.1"]).await;
    let proxy = ConnectProxy::start().await;
    let certificate = upstream.certificate.as_ref().unwrap().to_str().unwrap();
    let gateway = Gateway::start(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("UPSTREAM_API_KEY", "sk-upstream"),
        ("UPSTREAM_RETRIES", "0"),
        ("SSL_CERT_FILE", certificate),
        ("HTTPS_PROXY", &proxy.url),
    ])
    .await;
    let response = post_chat(&gateway).await;
    assert_eq!(response.status(), 200);
    let frames = frames(response).await;
    assert_eq!(openai_text(&frames), "Hello!");
    assert_eq!(frames.last().map(String::as_str), Some("data: [DONE]"));
    let authority = upstream.base_url.trim_start_matches("https://");
    let authority = authority.trim_end_matches("/v1");
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels.len(), 1, "one tunnel");
    assert_eq!(tunnels[0].target, authority, "to the upstream");
    assert!(
        !tunnels[0].head.contains("sk-upstream"),
        "the proxy never sees the upstream's key: {}",
        tunnels[0].head
    );
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some("Bearer sk-upstream"),
        "the key reaches the upstream, inside the tunnel"
    );
}
