//! One HTTP/1.1 connection per in-flight request ([`streamgate_bench::http1`], TCP_NODELAY on),
//! reused with keep-alive, and the per-request stream reader that timestamps SSE events with
//! the time of the read that brought them.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use hyper::Uri;
use serde_json::{Value, json};
use streamgate_bench::{
    hist::record_us,
    http1::Conn,
    sse::{SseParser, find, has_nonempty_content},
};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// POST /v1/chat/completions, stream:true; ends with `data: [DONE]`.
    Openai,
    /// POST /api/chat; browser events (`id: n`, `data: {"content":…}`), ends with `event: stop`.
    Browser,
}

impl Dialect {
    pub fn default_path(self) -> &'static str {
        match self {
            Dialect::Openai => "/v1/chat/completions",
            Dialect::Browser => "/api/chat",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Browser => "browser",
        }
    }
}

/// Where and what to send. Cheap to clone (the request is serialised once, reference counted).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub url: String,
    /// The whole request, head and body, as it goes on the wire.
    pub request: Bytes,
    pub dialect: Dialect,
}

/// Options that shape the request body.
pub struct BodyOpts<'a> {
    pub model: Option<&'a str>,
    pub prompt: &'a str,
    pub include_usage: bool,
    pub extra_json: Option<&'a str>,
    pub body: Option<&'a str>,
}

impl Target {
    pub fn new(
        base_url: &str,
        path: Option<&str>,
        dialect: Dialect,
        api_key: Option<&str>,
        b: &BodyOpts<'_>,
    ) -> Result<Self, String> {
        let base: Uri = base_url
            .parse()
            .map_err(|e| format!("bad --url {base_url:?}: {e}"))?;
        if base.scheme_str().unwrap_or("http") != "http" {
            return Err("only http:// URLs are supported".into());
        }
        let authority = base
            .authority()
            .ok_or_else(|| format!("--url {base_url:?} has no host:port"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let ip: std::net::IpAddr = if host == "localhost" {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            host.parse()
                .map_err(|_| format!("--url host must be an IP address or localhost: {host:?}"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "refusing to load a non-loopback address ({ip}); benchmarks only target 127.0.0.0/8 or ::1"
            ));
        }
        let base_path = base.path().trim_end_matches('/');
        let path = match path {
            Some(p) => p.to_string(),
            None => format!("{base_path}{}", dialect.default_path()),
        };
        let uri: Uri = path
            .parse()
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        let body = match b.body {
            Some(raw) => {
                let v: Value =
                    serde_json::from_str(raw).map_err(|e| format!("--body is not JSON: {e}"))?;
                Bytes::from(v.to_string())
            }
            None => Bytes::from(default_body(dialect, b)?.to_string()),
        };
        if api_key.is_some_and(|k| k.bytes().any(|b| b.is_ascii_control())) {
            return Err("bad --api-key: control characters".into());
        }
        let mut request = format!(
            "POST {uri} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
             accept: text/event-stream\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(k) = api_key {
            request.push_str(&format!("authorization: Bearer {k}\r\n"));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        request.extend_from_slice(&body);
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            url: format!("http://{authority}{path}"),
            request: Bytes::from(request),
            dialect,
        })
    }
}

fn default_body(dialect: Dialect, b: &BodyOpts<'_>) -> Result<Value, String> {
    let mut v = json!({"messages": [{"role": "user", "content": b.prompt}]});
    if let Some(m) = b.model {
        v["model"] = json!(m);
    }
    if dialect == Dialect::Openai {
        v["stream"] = json!(true);
        if b.include_usage {
            v["stream_options"] = json!({"include_usage": true});
        }
    }
    if let Some(extra) = b.extra_json {
        let e: Value =
            serde_json::from_str(extra).map_err(|e| format!("--extra-json is not JSON: {e}"))?;
        let Value::Object(map) = e else {
            return Err("--extra-json must be a JSON object".into());
        };
        for (k, val) in map {
            v[k] = val;
        }
    }
    Ok(v)
}

/// Why a request did not count as a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrKind {
    Connect,
    Timeout,
    Status(u16),
    /// Connection reset or closed mid-request.
    Io,
    /// The stream carried an error event (`data: {"error":…}`, `event: error`, or a `stop`
    /// whose finish_reason is `error`/`timeout`/`cancelled`).
    StreamError,
    /// The body ended without `[DONE]` / `event: stop`.
    NoTerminal,
    /// Terminal marker seen, but never a content event.
    NoContent,
    LineTooLong,
}

impl ErrKind {
    pub fn key(&self) -> String {
        match self {
            ErrKind::Connect => "connect".into(),
            ErrKind::Timeout => "timeout".into(),
            ErrKind::Status(s) => format!("status_{s}"),
            ErrKind::Io => "io".into(),
            ErrKind::StreamError => "stream_error".into(),
            ErrKind::NoTerminal => "no_terminal".into(),
            ErrKind::NoContent => "no_content".into(),
            ErrKind::LineTooLong => "line_too_long".into(),
        }
    }
}

/// Timings of one successful request, from the moment it was issued.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub headers: Duration,
    pub ttft: Duration,
    pub total: Duration,
}

/// What the reader has seen so far in one stream.
#[derive(Default)]
struct StreamState {
    first_content: Option<Instant>,
    last_event: Option<Instant>,
    terminal: Option<Instant>,
    error: bool,
}

impl StreamState {
    fn on_event(
        &mut self,
        dialect: Dialect,
        ev: &streamgate_bench::sse::Event,
        now: Instant,
        gaps: &mut Option<&mut Histogram<u64>>,
    ) {
        if !ev.has_data && ev.name.is_none() {
            return;
        }
        if let Some(last) = self.last_event
            && let Some(g) = gaps.as_deref_mut()
        {
            record_us(g, now - last);
        }
        self.last_event = Some(now);
        let data = ev.data.as_slice();
        match dialect {
            Dialect::Openai => {
                if data == b"[DONE]" {
                    self.terminal.get_or_insert(now);
                } else if data.starts_with(b"{\"error\"")
                    || find(data, b"\"object\":\"error\"").is_some()
                {
                    self.error = true;
                } else if self.first_content.is_none() && has_nonempty_content(data) {
                    self.first_content = Some(now);
                }
            }
            Dialect::Browser => match ev.name.as_deref() {
                Some(b"stop") => {
                    self.terminal.get_or_insert(now);
                    if find(data, b"\"finish_reason\":\"error\"").is_some()
                        || find(data, b"\"finish_reason\":\"timeout\"").is_some()
                        || find(data, b"\"finish_reason\":\"cancelled\"").is_some()
                    {
                        self.error = true;
                    }
                }
                Some(b"error") => self.error = true,
                None | Some(b"message") => {
                    if self.first_content.is_none() && has_nonempty_content(data) {
                        self.first_content = Some(now);
                    }
                }
                Some(_) => {}
            },
        }
    }
}

/// Sends one request on `conn` and reads its stream to the end. `t0` is when the request was
/// issued (before a connect, if one was needed). Gaps between consecutive events are recorded
/// into `gaps` when given.
pub async fn execute(
    conn: &mut Conn,
    tgt: &Target,
    t0: Instant,
    mut gaps: Option<&mut Histogram<u64>>,
) -> Result<Timing, ErrKind> {
    let mut resp = conn.send(&tgt.request).await.map_err(|_| ErrKind::Io)?;
    let headers = resp.head_at - t0;
    if resp.status != 200 {
        // Read a bounded amount so the connection may be reused.
        let mut n = 0usize;
        while n <= 1 << 20 {
            match conn.body(&mut resp, |d, _| n += d.len()).await {
                Ok(false) => {}
                Ok(true) | Err(_) => break,
            }
        }
        return Err(ErrKind::Status(resp.status));
    }
    let mut parser = SseParser::new();
    let mut st = StreamState::default();
    let mut too_long = false;
    loop {
        let ended = conn
            .body(&mut resp, |data, at| {
                too_long |= parser
                    .feed(data, |ev| st.on_event(tgt.dialect, ev, at, &mut gaps))
                    .is_err();
            })
            .await
            .map_err(|_| ErrKind::Io)?;
        if too_long {
            return Err(ErrKind::LineTooLong);
        }
        if ended {
            break;
        }
    }
    if st.error {
        return Err(ErrKind::StreamError);
    }
    let Some(end) = st.terminal else {
        return Err(ErrKind::NoTerminal);
    };
    let Some(first) = st.first_content else {
        return Err(ErrKind::NoContent);
    };
    Ok(Timing {
        headers,
        ttft: first - t0,
        total: end - t0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_bench::{hist::new_hist, sse::SseParser};

    fn feed(dialect: Dialect, text: &[u8]) -> (StreamState, u64) {
        let mut st = StreamState::default();
        let mut h = new_hist();
        let mut gaps = Some(&mut h);
        let mut p = SseParser::new();
        let now = Instant::now();
        let r = p.feed(text, |ev| st.on_event(dialect, ev, now, &mut gaps));
        assert!(r.is_ok());
        let n = h.len();
        (st, n)
    }

    #[test]
    fn browser_stream_from_the_contract() {
        let text = b"retry: 2000\n\nid: 1\ndata: {\"content\":\"Hel\"}\n\nid: 2\ndata: {\"content\":\"lo\"}\n\n: ping\n\nid: 3\nevent: stop\ndata: {\"finish_reason\":\"stop\",\"usage\":{},\"stream_id\":\"x\"}\n\n";
        let (st, gaps) = feed(Dialect::Browser, text);
        assert!(st.first_content.is_some());
        assert!(st.terminal.is_some());
        assert!(!st.error);
        assert_eq!(
            gaps, 2,
            "three events, the retry block and the comment are not events"
        );
    }

    #[test]
    fn browser_error_and_cancel_count_as_errors() {
        let (st, _) = feed(
            Dialect::Browser,
            b"id: 1\nevent: error\ndata: {\"code\":\"upstream_error\"}\n\nid: 2\nevent: stop\ndata: {\"finish_reason\":\"error\"}\n\n",
        );
        assert!(st.error && st.terminal.is_some() && st.first_content.is_none());
    }

    #[test]
    fn openai_stream() {
        let text = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
        let (st, gaps) = feed(Dialect::Openai, text);
        assert!(st.first_content.is_some() && st.terminal.is_some() && !st.error);
        assert_eq!(gaps, 2);
        let (st, _) = feed(
            Dialect::Openai,
            b"data: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]\n\n",
        );
        assert!(st.error);
    }
}
