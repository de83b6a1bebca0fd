//! HTTP/1.1 to a plain `http://` upstream, on connections driven by the stream that reads
//! them rather than by tasks of their own.
//!
//! Why not reqwest here: reqwest (through hyper-util) runs each connection as a task of its
//! own. On an actix worker, tokio first runs up to 61 of the worker's own tasks (the client
//! connections, where the handlers run) and only then those, so a request a handler hands
//! over leaves only once the requests that arrived with it have all been handled, and each
//! event on its way back waits the same way. Driven here, a request is written in the poll
//! that made it and an event relayed in the poll that read it, as nginx does; BENCHMARKS.md
//! has the time to first token before and after.
//!
//! Used only where it does all that reqwest would: `http://` upstreams, without credentials
//! in the URL and without a proxy in the environment. An answer that redirects is fetched
//! again through reqwest, which follows it.

mod body;
mod pool;
#[cfg(test)]
mod tests;

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub use body::Body;
use pool::{Connection, Pool};

/// The proxy variables reqwest honours for `http://` URLs; with any of them set, requests go
/// through reqwest so that the proxy is used.
const PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// Posts to one upstream endpoint over this worker's pooled connections.
pub struct Http1 {
    pool: Arc<Pool>,
    host: String,
    port: u16,
    uri: Uri,
    host_header: HeaderValue,
    connect_timeout: Duration,
}

/// The head of an upstream's answer, and its body still to be read.
pub struct Answer {
    pub status: hyper::StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Http1 {
    /// `None` where reqwest has to do the work: any scheme but `http`, credentials in the
    /// URL, or a proxy set in the environment.
    pub fn for_endpoint(url: &url::Url, connect_timeout: Duration) -> Option<Self> {
        let proxied = PROXY_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        let credentials = !url.username().is_empty() || url.password().is_some();
        if url.scheme() != "http" || credentials || proxied {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(domain) => domain.to_owned(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port_or_known_default()?;
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        Some(Self {
            pool: Arc::default(),
            host,
            port,
            uri: Uri::try_from(&url[url::Position::BeforePath..]).ok()?,
            host_header: HeaderValue::from_str(authority).ok()?,
            connect_timeout,
        })
    }

    /// POSTs `body` with the headers `headers` builds (and `Host`) and resolves once the
    /// answer's head is in. On a kept connection, the request is written before this first
    /// returns `Pending`. The headers are built again only if a kept connection turns out
    /// closed, rather than copied for that rare case on every request.
    pub async fn post(
        &self,
        headers: impl Fn() -> HeaderMap,
        body: Bytes,
    ) -> Result<Answer, String> {
        let request = || {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = self.uri.clone();
            *request.headers_mut() = headers();
            request
                .headers_mut()
                .insert(header::HOST, self.host_header.clone());
            request
        };
        if let Some(connection) = self.pool.take() {
            match exchange(connection, request()).await {
                Ok(answer) => return Ok(answer.into_answer(&self.pool)),
                // An idle connection the upstream closed as it was taken (its keep-alive
                // timeout ran out): a new one is tried at once. The upstream never answered,
                // so nothing reached the client, and failing here would only make the caller
                // retry after a backoff.
                Err(Exchange::Closed(_)) => {}
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        let connection = self.connect().await?;
        match exchange(connection, request()).await {
            Ok(answer) => Ok(answer.into_answer(&self.pool)),
            Err(Exchange::Closed(e) | Exchange::Failed(e)) => Err(e),
        }
    }

    async fn connect(&self) -> Result<Box<Connection>, String> {
        let connecting = async {
            let mut last = None;
            for address in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
                match TcpStream::connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("the host has no address")))
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(format!("connection failed ({e})")),
            Err(_) => return Err("connection failed (timed out)".to_owned()),
        };
        // The upstream socket carries small, latency-sensitive writes too.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("connection failed ({e})"))?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| describe_chain("connection failed", &e))?;
        Ok(Box::new(Connection { sender, driver }))
    }
}

enum Exchange {
    /// The connection closed (or was reset) before any answer came.
    Closed(String),
    Failed(String),
}

struct Headed {
    response: hyper::Response<hyper::body::Incoming>,
    /// `None` if the connection closed along with the answer.
    connection: Option<Box<Connection>>,
}

impl Headed {
    fn into_answer(self, pool: &Arc<Pool>) -> Answer {
        let (parts, incoming) = self.response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: Body::new(incoming, self.connection, Arc::clone(pool)),
        }
    }
}

/// Sends `request` on `connection` and drives both until the answer's head is in.
async fn exchange(
    mut connection: Box<Connection>,
    request: Request<Full<Bytes>>,
) -> Result<Headed, Exchange> {
    let mut response = std::pin::pin!(connection.sender.send_request(request));
    let mut open = true;
    let head = poll_fn(|cx| {
        // Polled first so the request is written now, not at the connection's next wake-up.
        open = connection.poll_open(cx);
        // Only the connection, just polled, answers it; its wake-up would be a wasted poll.
        match response
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Pending if open => Poll::Pending,
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result)),
        }
    })
    .await;
    match head {
        Some(Ok(response)) => Ok(Headed {
            response,
            connection: open.then_some(connection),
        }),
        Some(Err(e)) if closed_before_answering(&e) => {
            Err(Exchange::Closed(describe_chain("request failed", &e)))
        }
        Some(Err(e)) => Err(Exchange::Failed(describe_chain("request failed", &e))),
        None => Err(Exchange::Closed(
            "request failed (the upstream closed the connection without answering)".to_owned(),
        )),
    }
}

/// The connection ended before the answer began: never written to, closed, or reset.
fn closed_before_answering(error: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    let io_kind = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    error.is_canceled()
        || error.is_incomplete_message()
        || matches!(
            io_kind,
            Some(BrokenPipe | ConnectionAborted | ConnectionReset)
        )
}

/// `what`, with the root cause of `error` in brackets (hyper's own message when it has none:
/// unlike reqwest's, it never holds the URL).
fn describe_chain(what: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let root = super::response::root_source(error).unwrap_or(error);
    format!("{what} ({root})")
}
