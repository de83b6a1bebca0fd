//! A scripted upstream on a raw socket: every byte it sends is the test's choice (slow
//! chunks, garbage, a cut, a stall), and it records each request and each connection the
//! gateway dropped before the script was done. [`MockUpstream::start_tls`] plays the same
//! scripts over TLS, with a certificate of its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::rustls::{self, pki_types::PrivatePkcs8KeyDer};

#[derive(Clone, Debug)]
pub enum Step {
    /// Status line and headers; a body delimited by closing the connection follows.
    Head(u16, &'static str),
    /// Extra response header line (before the first `Raw`/`Data`), e.g. `Retry-After: 1`.
    Header(String),
    /// Bytes written exactly as given.
    Raw(String),
    /// Bytes that need not be UTF-8.
    Bytes(Vec<u8>),
    /// `data: {payload}\n\n`
    Data(String),
    Sleep(Duration),
    /// Sends nothing more, holding the connection until the gateway drops it.
    Stall,
}

#[derive(Clone, Debug, Default)]
pub struct Script(pub Vec<Step>);

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub head: String,
    pub body: Value,
    /// Over TLS, the protocols the client offered by ALPN.
    pub offered: Vec<String>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct State {
    scripts: VecDeque<Script>,
    last: Script,
    requests: Vec<Recorded>,
    dropped: usize,
}

pub struct MockUpstream {
    pub base_url: String,
    /// Over TLS, the PEM file of the upstream's certificate, for `SSL_CERT_FILE`.
    pub certificate: Option<std::path::PathBuf>,
    state: Arc<Mutex<State>>,
    dropped: Arc<Notify>,
}

impl MockUpstream {
    /// Serves `scripts` in order, one per request; the last one repeats.
    pub async fn start(scripts: Vec<Script>) -> MockUpstream {
        Self::listen(scripts, None).await
    }

    /// The same over TLS, as `https://127.0.0.1:port/v1`, offering HTTP/2 and HTTP/1.1 as API
    /// servers do (the scripts are HTTP/1.1: a client that picks h2 gets nowhere).
    pub async fn start_tls(scripts: Vec<Script>) -> MockUpstream {
        Self::start_tls_offering(scripts, &[b"h2", b"http/1.1"]).await
    }

    /// The same, offering only these protocols by ALPN: `http/1.1` alone for a client that
    /// would otherwise pick h2 (reqwest, when a proxy is set).
    pub async fn start_tls_offering(scripts: Vec<Script>, alpn: &[&[u8]]) -> MockUpstream {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key.into())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let mut upstream = Self::listen(scripts, Some(Arc::new(config))).await;
        let path = std::env::temp_dir().join(format!(
            "streamgate-test-upstream-{}-{}.pem",
            std::process::id(),
            upstream
                .base_url
                .rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches("/v1")
        ));
        std::fs::write(&path, cert.pem()).unwrap();
        upstream.certificate = Some(path);
        upstream
    }

    async fn listen(scripts: Vec<Script>, tls: Option<Arc<rustls::ServerConfig>>) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            scripts: scripts.into(),
            ..State::default()
        }));
        let dropped = Arc::new(Notify::new());
        let (s, d) = (state.clone(), dropped.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (s, d) = (s.clone(), d.clone());
                match &tls {
                    None => {
                        tokio::spawn(serve(socket, Vec::new(), s, d));
                    }
                    Some(config) => {
                        let config = Arc::clone(config);
                        tokio::spawn(async move {
                            let start = tokio_rustls::LazyConfigAcceptor::new(
                                rustls::server::Acceptor::default(),
                                socket,
                            );
                            let Ok(start) = start.await else { return };
                            let offered = start
                                .client_hello()
                                .alpn()
                                .into_iter()
                                .flatten()
                                .map(|p| String::from_utf8_lossy(p).into_owned())
                                .collect();
                            if let Ok(stream) = start.into_stream(config).await {
                                serve(stream, offered, s, d).await;
                            }
                        });
                    }
                }
            }
        });
        MockUpstream {
            base_url: format!("{scheme}://127.0.0.1:{port}/v1"),
            certificate: None,
            state,
            dropped,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Connections the gateway closed before the script had finished.
    pub fn drops(&self) -> usize {
        self.state.lock().unwrap().dropped
    }

    /// Waits (at most `limit`) until the gateway has dropped a connection mid-script.
    pub async fn wait_for_drop(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.dropped.notified();
                if self.drops() > 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(path) = &self.certificate {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn serve(
    mut socket: impl AsyncRead + AsyncWrite + Unpin,
    offered: Vec<String>,
    state: Arc<Mutex<State>>,
    dropped: Arc<Notify>,
) {
    let Some(mut recorded) = read_request(&mut socket).await else {
        return;
    };
    recorded.offered = offered;
    let script = {
        let mut state = state.lock().unwrap();
        state.requests.push(recorded);
        let next = state
            .scripts
            .pop_front()
            .unwrap_or_else(|| state.last.clone());
        state.last = next.clone();
        next
    };
    let (mut reader, mut writer) = tokio::io::split(socket);
    let finished = Arc::new(Notify::new());
    let done = finished.clone();
    let play = async move {
        let mut head = String::new();
        let mut head_sent = false;
        for step in script.0 {
            match step {
                Step::Head(status, content_type) => {
                    head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
                    );
                }
                Step::Header(line) => {
                    head.push_str(&line);
                    head.push_str("\r\n");
                }
                Step::Raw(_) | Step::Bytes(_) | Step::Data(_) | Step::Sleep(_) | Step::Stall
                    if !head_sent =>
                {
                    head.push_str("\r\n");
                    writer.write_all(head.as_bytes()).await?;
                    writer.flush().await?;
                    head_sent = true;
                    write_step(&mut writer, step).await?;
                }
                step => write_step(&mut writer, step).await?,
            }
        }
        if !head_sent {
            head.push_str("\r\n");
            writer.write_all(head.as_bytes()).await?;
        }
        writer.shutdown().await?;
        done.notify_one();
        Ok::<_, std::io::Error>(())
    };
    // The gateway closing its side mid-script shows as EOF (or a reset) on the read half.
    let watch = async move {
        let mut buf = [0u8; 256];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        result = play => {
            if result.is_err() {
                state.lock().unwrap().dropped += 1;
                dropped.notify_waiters();
            }
        }
        () = watch => {
            state.lock().unwrap().dropped += 1;
            dropped.notify_waiters();
        }
    }
    drop(finished);
}

/// Writes a step and flushes it: over TLS a write may stay in the session's buffer, and a
/// step must be on the wire before the next one (a sleep, a stall) begins.
async fn write_step(writer: &mut (impl AsyncWrite + Unpin), step: Step) -> std::io::Result<()> {
    match step {
        Step::Raw(text) => writer.write_all(text.as_bytes()).await?,
        Step::Bytes(bytes) => writer.write_all(&bytes).await?,
        Step::Data(payload) => {
            writer
                .write_all(format!("data: {payload}\n\n").as_bytes())
                .await?;
        }
        Step::Sleep(d) => tokio::time::sleep(d).await,
        Step::Stall => futures::future::pending().await,
        Step::Head(..) | Step::Header(_) => {}
    }
    writer.flush().await
}

async fn read_request(socket: &mut (impl AsyncRead + Unpin)) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Recorded {
        path,
        head,
        body,
        offered: Vec::new(),
    })
}

// ---- scripts of realistic upstream answers ----

pub fn sse_head() -> Step {
    Step::Head(200, "text/event-stream")
}

pub fn content_chunk(text: &str) -> String {
    json!({"id":"chatcmpl-t","object":"chat.completion.chunk","created":1,"model":"m",
           "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
    .to_string()
}

pub fn finish_chunk(reason: &str) -> String {
    json!({"id":"chatcmpl-t","object":"chat.completion.chunk","created":1,"model":"m",
           "choices":[{"index":0,"delta":{},"finish_reason":reason}]})
    .to_string()
}

pub fn usage_chunk(prompt: u64, completion: u64) -> String {
    json!({"id":"chatcmpl-t","object":"chat.completion.chunk","created":1,"model":"m","choices":[],
           "usage":{"prompt_tokens":prompt,"completion_tokens":completion,"total_tokens":prompt+completion}})
    .to_string()
}

/// A complete, well-behaved streaming answer: one chunk per token, `gap` apart.
pub fn answer(tokens: &[&str], gap: Duration) -> Script {
    let mut steps = vec![sse_head()];
    for token in tokens {
        steps.push(Step::Data(content_chunk(token)));
        steps.push(Step::Sleep(gap));
    }
    steps.push(Step::Data(finish_chunk("stop")));
    steps.push(Step::Data(usage_chunk(5, tokens.len() as u64)));
    steps.push(Step::Data("[DONE]".into()));
    Script(steps)
}

/// 100 chunks 100 ms apart: an answer still streaming when a test's client goes away.
pub fn slow_answer() -> Script {
    answer(&["tok"; 100], Duration::from_millis(100))
}

/// An upstream refusal with an OpenAI-shaped error body.
pub fn refusal(status: u16, message: &str) -> Script {
    Script(vec![
        Step::Head(status, "application/json"),
        Step::Raw(json!({"error":{"message":message,"type":"x"}}).to_string()),
    ])
}
