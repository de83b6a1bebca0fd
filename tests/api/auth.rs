//! Gateway keys: required where a request spends upstream quota or lists models, not for
//! health, the page, or a stream read by its id (the id is the capability).

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_of, spawn_app};

const KEYS: &str = "sk-gw-alice,sk-gw-bob";

async fn gateway() -> TestApp {
    spawn_app(&[("GATEWAY_API_KEYS", KEYS)]).await
}

fn chat() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}], "mock": {"tokens": 1}})
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if method == Method::POST {
        let body = if path.starts_with("/v1") {
            chat()
        } else {
            json!({"prompt": "hi", "mock": {"tokens": 1}})
        };
        request = request.json(&body);
    }
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

const GUARDED: [(Method, &str); 5] = [
    (Method::POST, "/v1/chat/completions"),
    (Method::GET, "/v1/models"),
    (Method::POST, "/api/chat"),
    (Method::POST, "/api/chat/messages"),
    (Method::GET, "/no/such/path"),
];

#[actix_web::test]
async fn guarded_routes_refuse_a_request_without_a_valid_key() {
    let app = gateway().await;
    let wrong = [
        None,
        Some(("authorization", "Bearer sk-gw-mallory")),
        Some(("authorization", "Bearer sk-gw-alic")),
        Some(("authorization", "Bearer sk-gw-alice2")),
        Some(("authorization", "Basic c2stZ3ctYWxpY2U6")),
        Some(("authorization", "sk-gw-alice")),
        Some(("x-api-key", "")),
        Some(("x-api-key", "SK-GW-ALICE")),
    ];
    for (method, path) in GUARDED {
        for auth in wrong {
            let response = send(&app, method.clone(), path, auth).await;
            assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let error = error_of(response).await;
            assert_eq!(error["code"], "invalid_api_key");
            assert_eq!(error["type"], "authentication_error");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("x-api-key"), "{message}");
            if let Some((_, value)) = auth {
                assert!(
                    value.is_empty() || !message.contains(value),
                    "the presented key is echoed"
                );
            }
        }
    }
    assert_eq!(app.shared.limits.active(), 0, "nothing started");
}

#[actix_web::test]
async fn either_header_with_any_configured_key_is_let_in() {
    let app = gateway().await;
    for auth in [
        ("authorization", "Bearer sk-gw-alice"),
        ("authorization", "bearer sk-gw-bob"),
        ("x-api-key", "sk-gw-alice"),
        ("x-api-key", "sk-gw-bob"),
    ] {
        for (method, path) in &GUARDED[..4] {
            let response = send(&app, method.clone(), path, Some(auth)).await;
            assert!(
                response.status().is_success(),
                "{method} {path} with {auth:?}: {}",
                response.status()
            );
        }
    }
}

#[actix_web::test]
async fn health_the_page_and_streams_by_id_need_no_key() {
    let app = gateway().await;
    for path in ["/", "/healthz", "/readyz"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let created: Value = app
        .post_as(
            "sk-gw-alice",
            "/api/chat/messages",
            &json!({"prompt": "hi"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let url = created["stream_url"].as_str().unwrap();
    assert_eq!(app.get(url).await.status(), 200, "read by id");
    let deleted = app.client.delete(app.url(url)).send().await.unwrap();
    assert_eq!(deleted.status(), 204, "cancel by id");
    let unknown = app
        .get("/api/chat/streams/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(
        unknown.status(),
        404,
        "an unknown id is not found, not unauthorised"
    );
}

#[actix_web::test]
async fn with_no_keys_configured_the_gateway_is_open() {
    let app = spawn_app(&[]).await;
    for (method, path) in &GUARDED[..4] {
        let response = send(&app, method.clone(), path, None).await;
        assert!(response.status().is_success(), "{method} {path}");
    }
}

#[actix_web::test]
async fn a_dot_dot_path_under_the_open_prefix_reaches_no_guarded_route() {
    let app = gateway().await;
    let body = chat().to_string();
    let request = format!(
        "POST /api/chat/streams/../../../v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = app.raw(request.as_bytes()).await;
    let status = answer.split_whitespace().nth(1).unwrap_or("");
    assert!(
        ["404", "405"].contains(&status),
        "expected 404 or 405, got {answer:?}"
    );
    assert_eq!(app.shared.limits.active(), 0, "nothing started");
}
