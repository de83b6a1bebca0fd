//! The real binary's JSON logs: one summary line per request with the fields operators
//! search by, `X-Request-Id` echoed or generated, and never a prompt's text or a key.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::frames;
use crate::support::process::Gateway;
use crate::support::upstream::{self, MockUpstream};

const PROMPT: &str = "my-very-private-prompt-text";
const UPSTREAM_KEY: &str = "sk-upstream-secret-4b9f";
const GATEWAY_KEY: &str = "gw-client-secret-77c1";

/// The summary lines (target `streamgate::request`) of one request id.
fn summaries(gateway: &Gateway, request_id: &str) -> Vec<Value> {
    gateway
        .json_lines()
        .into_iter()
        .filter(|l| l["target"] == "streamgate::request" && l["request_id"] == request_id)
        .collect()
}

#[tokio::test]
async fn json_logs_have_one_summary_per_request_and_never_a_prompt_or_a_key() {
    let upstream = MockUpstream::start(vec![upstream::answer(
        &["Hel", "lo"],
        Duration::from_millis(5),
    )])
    .await;
    let mut gateway = Gateway::start(&[
        ("UPSTREAM_BASE_URL", &upstream.base_url),
        ("UPSTREAM_API_KEY", UPSTREAM_KEY),
        ("GATEWAY_API_KEYS", GATEWAY_KEY),
    ])
    .await;
    let prompt = json!({"model": "gpt-x", "stream": true,
                        "messages": [{"role": "user", "content": PROMPT}]});

    // A streaming completion with the client's own request id.
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("x-request-id", "client-req-1")
        .json(&prompt)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-req-1");
    assert_eq!(frames(response).await.last().unwrap(), "data: [DONE]");
    assert_eq!(
        upstream.requests()[0].header("x-request-id").as_deref(),
        Some("client-req-1"),
        "the upstream sees the same id"
    );
    let line = gateway
        .wait_for_log("the completion's summary", |l| {
            l["request_id"] == "client-req-1"
        })
        .await;
    assert_eq!(line["target"], "streamgate::request");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "request");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/v1/chat/completions");
    assert_eq!(line["status"], 200);
    assert_eq!(line["model"], "gpt-x");
    assert_eq!(line["finish_reason"], "stop");
    assert_eq!(line["prompt_tokens"], 5);
    assert_eq!(line["completion_tokens"], 2);
    assert_eq!(line["usage_estimated"], false);
    for field in ["ttft_ms", "upstream_ttft_ms", "overhead_ms", "duration_ms"] {
        assert!(
            line[field].as_f64().is_some_and(|v| v >= 0.0),
            "{field}: {line}"
        );
    }
    assert!(line["ttft_ms"].as_f64() <= line["duration_ms"].as_f64());

    // The EventSource flow: the POST's line comes when its generation ends and names the
    // stream; each read of the stream has its own line.
    let created: Value = gateway
        .client
        .post(gateway.url("/api/chat/messages"))
        .header("x-api-key", GATEWAY_KEY)
        .header("x-request-id", "client-req-2")
        .json(&json!({"prompt": PROMPT}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream_id = created["id"].as_str().unwrap();
    let read = gateway
        .client
        .get(gateway.url(&format!("/api/chat/streams/{stream_id}")))
        .header("x-request-id", "client-req-3")
        .send()
        .await
        .unwrap();
    frames(read).await;
    let post = gateway
        .wait_for_log("the POST's summary", |l| l["request_id"] == "client-req-2")
        .await;
    assert_eq!(post["status"], 201);
    assert_eq!(post["stream_id"], stream_id);
    assert_eq!(post["route"], "/api/chat/messages");
    assert_eq!(post["finish_reason"], "stop");
    assert!(post["ttft_ms"].is_number(), "{post}");
    let get = gateway
        .wait_for_log("the read's summary", |l| l["request_id"] == "client-req-3")
        .await;
    assert_eq!(get["stream_id"], stream_id);
    assert_eq!(get["route"], "/api/chat/streams/{id}");
    assert_eq!(get["status"], 200);

    // A refusal gets a generated id, echoed and logged.
    let refused = gateway
        .client
        .post(gateway.url("/api/chat"))
        .header("x-request-id", "not a valid id!")
        .json(&json!({"prompt": PROMPT}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let generated = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 16, "{generated}");
    assert_ne!(generated, "not a valid id!");
    let line = gateway
        .wait_for_log("the refusal's summary", |l| {
            l["request_id"] == generated.as_str()
        })
        .await;
    assert_eq!(line["status"], 401);
    assert!(line.get("model").is_none(), "no generation: {line}");

    // Stopping writes out everything; then the whole log is checked.
    gateway.terminate();
    assert!(gateway.exit_status(Duration::from_secs(10)).await.success());
    for id in [
        "client-req-1",
        "client-req-2",
        "client-req-3",
        generated.as_str(),
    ] {
        assert_eq!(summaries(&gateway, id).len(), 1, "one line for {id}");
    }
    let lines = gateway.log_lines();
    assert!(lines.len() > 4);
    for line in &lines {
        assert!(!line.contains(PROMPT), "a prompt was logged: {line}");
        assert!(
            !line.contains(UPSTREAM_KEY),
            "the upstream key was logged: {line}"
        );
        assert!(
            !line.contains(GATEWAY_KEY),
            "a gateway key was logged: {line}"
        );
    }
}
