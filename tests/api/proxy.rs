//! A proxy in the environment (`HTTP_PROXY`) is honoured for a plain-http upstream: the
//! gateway's own connections to such upstreams step aside for reqwest, which uses it.

use std::time::Duration;

use serde_json::json;

use crate::support::process::Gateway;
use crate::support::upstream::{self, MockUpstream};
use crate::support::{frames, openai_text};

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
    let request = json!({"model": "m", "stream": true,
                         "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(openai_text(&frames(response).await), "Hi!");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path, "http://upstream.invalid/v1/chat/completions",
        "asked of the proxy in absolute form"
    );
}
