//! CORS: preflights answered before auth, for allowed origins only; the headers on every
//! answer a script must read, streams and refusals included; none at all when unconfigured.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, frames, spawn_app};

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";

async fn gateway(origins: &str) -> TestApp {
    spawn_app(&[
        ("CORS_ALLOWED_ORIGINS", origins),
        ("GATEWAY_API_KEYS", "sk-gw-alice"),
    ])
    .await
}

async fn preflight(app: &TestApp, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

fn list(response: &reqwest::Response, name: &str) -> Vec<String> {
    header(response, name)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[actix_web::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_key() {
    let app = gateway(&format!("{APP}, http://localhost:5173")).await;
    let response = preflight(
        &app,
        APP,
        "POST",
        "authorization, content-type, last-event-id, x-api-key",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), APP);
    let allowed = list(&response, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "last-event-id",
        "x-api-key",
    ] {
        assert!(allowed.contains(&name.to_owned()), "{name} in {allowed:?}");
    }
    let methods = list(&response, "access-control-allow-methods");
    for method in ["get", "post", "delete"] {
        assert!(
            methods.contains(&method.to_owned()),
            "{method} in {methods:?}"
        );
    }
    assert!(header(&response, "vary").contains("origin"));
    assert!(response.headers().contains_key("x-request-id"));

    let other = preflight(&app, "http://localhost:5173", "DELETE", "last-event-id").await;
    assert_eq!(other.status(), 200);
    assert_eq!(
        header(&other, "access-control-allow-origin"),
        "http://localhost:5173"
    );
}

#[actix_web::test]
async fn a_preflight_from_another_origin_or_for_another_method_is_refused() {
    let app = gateway(APP).await;
    for (origin, method, headers) in [
        (EVIL, "POST", "content-type"),
        (
            "https://app.example.com.evil.example.net",
            "POST",
            "content-type",
        ),
        ("http://app.example.com", "POST", "content-type"),
        (APP, "PUT", "content-type"),
    ] {
        let response = preflight(&app, origin, method, headers).await;
        assert!(
            !response.status().is_success(),
            "{origin} {method} {headers}: {}",
            response.status()
        );
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            "",
            "{origin} {method} {headers}"
        );
    }
}

#[actix_web::test]
async fn a_stream_carries_the_cors_headers_and_exposes_what_scripts_read() {
    let app = gateway(APP).await;
    let response = app
        .client
        .post(app.url("/api/chat"))
        .header("origin", APP)
        .bearer_auth("sk-gw-alice")
        .json(&json!({"prompt": "hi", "mock": {"tokens": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "access-control-allow-origin"), APP);
    let exposed = list(&response, "access-control-expose-headers");
    for name in [
        "x-stream-id",
        "x-request-id",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
    ] {
        assert!(exposed.contains(&name.to_owned()), "{name} in {exposed:?}");
    }
    let got = frames(response).await;
    assert!(got.last().unwrap().contains("event: stop"), "{got:?}");
}

#[actix_web::test]
async fn refusals_carry_the_cors_headers_so_scripts_can_read_them() {
    let app = spawn_app(&[
        ("CORS_ALLOWED_ORIGINS", APP),
        ("GATEWAY_API_KEYS", "sk-gw-alice"),
        ("RATE_LIMIT_RPM", "6"),
        ("RATE_LIMIT_BURST", "1"),
    ])
    .await;
    let unauthorised = app
        .client
        .post(app.url("/api/chat/messages"))
        .header("origin", APP)
        .json(&json!({"prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    assert_eq!(header(&unauthorised, "access-control-allow-origin"), APP);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url("/api/chat/messages"))
            .header("origin", APP)
            .bearer_auth("sk-gw-alice")
            .json(&json!({"prompt": "hi", "mock": {"tokens": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "access-control-allow-origin"), APP);
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [201, 429]);
}

#[actix_web::test]
async fn an_answer_to_another_origin_has_no_cors_headers() {
    let app = gateway(APP).await;
    let response = app
        .client
        .get(app.url("/v1/models"))
        .header("origin", EVIL)
        .bearer_auth("sk-gw-alice")
        .send()
        .await
        .unwrap();
    // Not refused (curl and SDKs send no Origin; the browser is what enforces CORS), but the
    // browser will not hand the answer to the script.
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "");
}

#[actix_web::test]
async fn a_wildcard_lets_any_origin_in() {
    let app = gateway("*").await;
    let response = preflight(&app, EVIL, "POST", "authorization, content-type").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
}

#[actix_web::test]
async fn with_no_origins_configured_there_is_no_cors_at_all() {
    let app = spawn_app(&[]).await;
    let response = preflight(&app, APP, "POST", "content-type").await;
    assert!(!response.status().is_success(), "{}", response.status());
    assert_eq!(header(&response, "access-control-allow-origin"), "");
    let answer = app
        .client
        .get(app.url("/v1/models"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), "");
    assert_eq!(header(&answer, "access-control-expose-headers"), "");
}

#[actix_web::test]
async fn a_preflight_for_the_openai_browser_sdks_own_headers_is_allowed() {
    let app = gateway(APP).await;
    let asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count";
    let response = preflight(&app, APP, "POST", asked).await;
    assert_eq!(response.status(), 200);
    let allowed = list(&response, "access-control-allow-headers");
    for name in ["x-stainless-os", "x-stainless-retry-count", "authorization"] {
        assert!(allowed.contains(&name.to_owned()), "{name} in {allowed:?}");
    }
}
