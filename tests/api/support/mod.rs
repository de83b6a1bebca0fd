//! What every integration test needs: the real server on a loopback port 0, a scripted
//! upstream, and an SSE reader.

pub mod connect_proxy;
pub mod process;
pub mod scrape;
pub mod upstream;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use streamgate::settings::Settings;
use streamgate::startup::Application;
use streamgate::state::Shared;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub shared: Shared,
}

/// Starts the gateway with these settings (defaults for the rest, mock model unless
/// `UPSTREAM_BASE_URL` is given). Heartbeats default to 60 s so they never interfere with a
/// test that does not ask for them.
pub async fn spawn_app(pairs: &[(&str, &str)]) -> TestApp {
    let mut all: Vec<(&str, &str)> = vec![
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("HEARTBEAT_SECS", "60"),
        ("MOCK_TTFT_MS", "0"),
        ("MOCK_TOKENS_PER_SEC", "0"),
        ("RATE_LIMIT_RPM", "0"),
        ("UPSTREAM_RETRIES", "0"),
    ];
    all.retain(|(k, _)| !pairs.iter().any(|(p, _)| p == k));
    all.extend_from_slice(pairs);
    let settings = Settings::from_pairs(&all).expect("test settings are valid");
    let app = Application::build(settings).expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shared = app.shared().clone();
    actix_web::rt::spawn(app.serve());
    TestApp {
        address,
        client: reqwest::Client::builder().build().unwrap(),
        shared,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs JSON presenting a gateway key as `Authorization: Bearer`.
    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Sends bytes exactly as given on a fresh connection and returns everything the gateway
    /// answers until it closes the connection. Send `Connection: close`.
    pub async fn raw(&self, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.address.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("the gateway answered and closed within 10 s")
            .ok();
        String::from_utf8_lossy(&answer).into_owned()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }
}

/// Waits (at most 5 s) until `condition` holds: for state with no event to await, such as a
/// stream's slot coming back just after its last event was sent.
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not {what} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `error` object of an OpenAI-shaped error answer.
pub async fn error_of(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.expect("a JSON error body");
    body["error"].clone()
}

/// Reads SSE frames (the text between blank lines) from a response as they arrive.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buf: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next frame without its trailing blank line, or `None` at the end of the body.
    pub async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let frame = self.buf[..i].to_owned();
                self.buf.drain(..i + 2);
                return Some(frame);
            }
            match tokio::time::timeout(Duration::from_secs(20), self.body.next()).await {
                Ok(Some(Ok(bytes))) => self
                    .buf
                    .push_str(std::str::from_utf8(&bytes).expect("SSE is UTF-8")),
                Ok(Some(Err(e))) => panic!("stream broke: {e}"),
                Ok(None) => return None,
                Err(_) => panic!("no SSE frame within 20 s; have {:?}", self.buf),
            }
        }
    }

    /// Every remaining frame.
    pub async fn all(mut self) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame().await {
            frames.push(frame);
        }
        frames
    }
}

/// All frames of a finite SSE response.
pub async fn frames(response: reqwest::Response) -> Vec<String> {
    SseReader::new(response).all().await
}

/// The JSON of a browser frame's `data:` line.
pub fn data(frame: &str) -> Value {
    let line = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data in {frame:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON in {frame:?}: {e}"))
}

/// The `event:` name of a frame (`None` for unnamed events).
pub fn event_name(frame: &str) -> Option<&str> {
    frame.lines().find_map(|l| l.strip_prefix("event: "))
}

/// The concatenated `content` of a browser stream's delta events.
pub fn browser_text(frames: &[String]) -> String {
    frames
        .iter()
        .filter(|f| f.contains("data: ") && event_name(f).is_none())
        .filter_map(|f| {
            data(f)
                .get("content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The concatenated content of an OpenAI stream's chunks.
pub fn openai_text(frames: &[String]) -> String {
    frames
        .iter()
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}
