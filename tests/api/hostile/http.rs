//! The HTTP layer: unknown paths and methods, malformed requests and headers, bodies
//! sent slowly and abandoned.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{alongside_a_slow_stream, assert_refused, gateway};
use crate::support::TestApp;

#[actix_web::test]
async fn unknown_paths_and_methods_get_a_404_or_405_naming_them_while_a_stream_flows_intact() {
    let app = gateway().await;
    let brew = Method::from_bytes(b"BREW").unwrap();
    let long = format!("/{}", "a".repeat(8000));
    let cases = [
        (
            Method::GET,
            "/v2/chat/completions",
            404,
            "no such endpoint: GET /v2/chat/completions",
        ),
        (
            Method::POST,
            "/api/chat/streams",
            404,
            "no such endpoint: POST /api/chat/streams",
        ),
        (Method::GET, "/%00%0d%0a", 404, "no such endpoint"),
        (Method::GET, long.as_str(), 404, "no such endpoint"),
        (
            Method::PUT,
            "/v1/chat/completions",
            405,
            "PUT is not supported on /v1/chat/completions",
        ),
        (
            Method::GET,
            "/api/chat",
            405,
            "GET is not supported on /api/chat",
        ),
        (
            Method::PATCH,
            "/api/chat/streams/abc",
            405,
            "PATCH is not supported",
        ),
        (brew, "/api/chat/messages", 405, "BREW is not supported"),
    ];
    alongside_a_slow_stream(&app, async {
        for (method, path, status, needle) in cases {
            let what = format!("{method} {}", &path[..path.len().min(40)]);
            let response = app
                .client
                .request(method, app.url(path))
                .send()
                .await
                .unwrap();
            assert_refused(&what, response, status, needle).await;
        }
    })
    .await;
}

fn status_of(answer: &str) -> &str {
    answer.split_whitespace().nth(1).unwrap_or("(no answer)")
}

#[actix_web::test]
async fn malformed_http_is_refused_while_a_stream_flows_intact() {
    let app = gateway().await;
    let body = r#"{"prompt":"x","mock":{"tokens":1}}"#;
    let post = |extra_headers: &str| {
        format!(
            "POST /api/chat/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}Connection: close\r\n\r\n{body}"
        )
        .into_bytes()
    };
    let length = format!("Content-Length: {}\r\n", body.len());
    let mut control_byte = post(&length);
    let at = control_byte.len() - body.len() - 4;
    control_byte.splice(at..at, b"\r\nX-Request-Id: a\x01b".iter().copied());
    let mut bare_cr = post(&length);
    bare_cr.splice(at..at, b"\r\nX-Request-Id: a\rb".iter().copied());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a control byte in a header value", control_byte),
        ("a bare CR in a header value", bare_cr),
        (
            "a space in a header name",
            post(&format!("{length}Bad Name: x\r\n")),
        ),
        (
            "a Content-Length that is not a number",
            post("Content-Length: ten\r\n"),
        ),
        (
            "a Content-Length past u64",
            post("Content-Length: 99999999999999999999999\r\n"),
        ),
        (
            "two Content-Lengths that disagree",
            post(&format!("{length}Content-Length: 5\r\n")),
        ),
        (
            "garbage instead of a request line",
            b"GARBAGE\r\n\r\n".to_vec(),
        ),
    ];
    alongside_a_slow_stream(&app, async {
        for (what, request) in cases {
            let answer = app.raw(&request).await;
            assert_eq!(status_of(&answer), "400", "{what}: {answer:?}");
        }
        // Valid bytes, but not an id we echo: a fresh one is made instead.
        let odd_id = post(&format!(
            "{length}X-Request-Id: ../../etc/passwd; rm -rf\r\n"
        ));
        let answer = app.raw(&odd_id).await;
        assert_eq!(status_of(&answer), "201", "{answer}");
        assert!(!answer.contains("passwd"), "{answer}");
    })
    .await;
    assert_eq!(
        app.shared.registry.len(),
        2 + 1,
        "only the stream's and the odd id's"
    );
}

#[actix_web::test]
async fn a_last_event_id_that_is_not_a_number_is_a_400_that_says_so() {
    let app = gateway().await;
    let created: Value = app
        .post(
            "/api/chat/messages",
            &json!({"prompt": "x", "mock": {"tokens": 1}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let url = created["stream_url"].as_str().unwrap();
    let request = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: \u{ff}\u{fe}\r\nConnection: close\r\n\r\n"
    );
    let answer = app.raw(request.as_bytes()).await;
    assert_eq!(status_of(&answer), "400", "{answer}");
    assert!(
        answer.contains("Last-Event-ID must be an event number"),
        "{answer}"
    );
}

/// Sends the head of a POST declaring `length` bytes, then `sent` bytes of body, slowly.
async fn half_a_body(app: &TestApp, length: usize, sent: usize) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let body = vec![b' '; sent];
    for piece in body.chunks(100) {
        socket.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    socket
}

#[actix_web::test]
async fn a_body_sent_slowly_and_abandoned_holds_nothing_while_a_stream_flows_intact() {
    let app = gateway().await;
    alongside_a_slow_stream(&app, async {
        // Closed outright after half the body.
        drop(half_a_body(&app, 2000, 1000).await);

        // Half-closed after half the body: the gateway must answer and let go at once, not
        // wait out the body deadline (30 s) for bytes that cannot come.
        let mut socket = half_a_body(&app, 2000, 1000).await;
        socket.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the gateway held an abandoned request open");
        let answer = String::from_utf8_lossy(&rest);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(
            answer.contains("it ended after 1000 of 2000 bytes"),
            "{answer}"
        );

        // The gateway still serves, and nothing was started for the abandoned requests.
        assert_eq!(app.get("/healthz").await.status(), 200);
    })
    .await;
    assert_eq!(app.shared.limits.active(), 0);
}
