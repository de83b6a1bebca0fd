//! HTTP/1.1 to an `http://` or `https://` upstream, on connections driven by the stream that
//! reads them rather than by tasks of their own.
//!
//! Why not reqwest here: reqwest (through hyper-util) runs each connection as a task of its
//! own. On an actix worker, tokio first runs up to 61 of the worker's own tasks (the client
//! connections, where the handlers run) and only then those, so a request a handler hands
//! over leaves only once the requests that arrived with it have all been handled, and each
//! event on its way back waits the same way. Driven here, a request is written in the poll
//! that made it and an event relayed in the poll that read it, as nginx does (BENCHMARKS.md
//! as of `713922c` has the trace that showed the detour).
//!
//! Why not hyper's client connection, driven the same way (as this module did before): each
//! body chunk went through hyper's dispatcher and a channel to its `Incoming` body, with a
//! waker and a reference-counted buffer per hand-over, about a third of the user-space
//! instructions per event. Here the stream reads the socket and splits each chunk's data off
//! the read buffer (`wire.rs`); `httparse`, which hyper uses too, reads the head.
//!
//! Over TLS (`tls.rs`; `tls_stream.rs` drives rustls without its buffers) this is HTTP/1.1,
//! one connection per stream in flight, where reqwest would multiplex HTTP/2: as nginx and
//! the OpenAI SDKs talk to these APIs. HTTP/2 framed every event a second time and moved each
//! frame through its own connection task.
//!
//! Used only where it does all that reqwest would: `http://` and `https://` upstreams,
//! without credentials in the URL and without a proxy in the environment. An answer that
//! redirects is fetched again through reqwest, which follows it.

mod body;
mod conn;
mod pool;
#[cfg(test)]
mod tests;
mod tls;
mod tls_stream;
mod transport;
mod wire;

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

pub use body::Body;
use conn::Connection;
use pool::Pool;
use transport::Transport;
pub use wire::{FieldValue, Fields};
use wire::{Head, WireError};

/// The proxy variables reqwest honours for `http://` and for `https://` URLs; with any of
/// them set, requests go through reqwest so that the proxy is used.
const HTTP_PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
const HTTPS_PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// Posts to one upstream endpoint over this worker's pooled connections.
pub struct Http1 {
    pool: Arc<Pool>,
    host: String,
    port: u16,
    /// The request target: the path and query.
    target: String,
    host_header: HeaderValue,
    connect_timeout: Duration,
    /// For `https://`: the handshake's configuration and the name the certificate must carry.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// The head of an upstream's answer, and its body still to be read.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Body,
}

impl Http1 {
    /// `None` where reqwest has to do the work: any scheme but `http` and `https`,
    /// credentials in the URL, or a proxy set in the environment.
    pub fn for_endpoint(url: &url::Url, connect_timeout: Duration) -> Option<Self> {
        Self::build(url, connect_timeout, tls::platform_config)
    }

    /// As [`Self::for_endpoint`], with `https://` certificates checked by `tls` (tests
    /// trust their own).
    #[cfg(test)]
    fn trusting(url: &url::Url, connect_timeout: Duration, tls: ClientConfig) -> Option<Self> {
        Self::build(url, connect_timeout, || Ok(tls::http11_only(tls)))
    }

    fn build(
        url: &url::Url,
        connect_timeout: Duration,
        tls_config: impl FnOnce() -> Result<Arc<ClientConfig>, rustls::Error>,
    ) -> Option<Self> {
        let proxy_variables = match url.scheme() {
            "http" => HTTP_PROXY_VARIABLES,
            "https" => HTTPS_PROXY_VARIABLES,
            _ => return None,
        };
        let proxied = proxy_variables
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        let credentials = !url.username().is_empty() || url.password().is_some();
        if credentials || proxied {
            return None;
        }
        let (host, server_name) = match url.host()? {
            url::Host::Domain(domain) => (
                domain.to_owned(),
                ServerName::try_from(domain.to_owned()).ok()?,
            ),
            url::Host::Ipv4(ip) => (ip.to_string(), ServerName::IpAddress(ip.into())),
            url::Host::Ipv6(ip) => (ip.to_string(), ServerName::IpAddress(ip.into())),
        };
        let tls = if url.scheme() == "https" {
            // Without a configuration (the platform's verifier would not start), reqwest
            // gets the requests, and reports what fails.
            Some((tls_config().ok()?, server_name))
        } else {
            None
        };
        let port = url.port_or_known_default()?;
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        Some(Self {
            pool: Arc::default(),
            host,
            port,
            target: url[url::Position::BeforePath..].to_owned(),
            host_header: HeaderValue::from_str(authority).ok()?,
            connect_timeout,
            tls,
        })
    }

    /// POSTs `body` with `fields`, `extra` (and `Host`) and resolves once the answer's head
    /// is in. On a kept connection, the request is written before this first returns `Pending`.
    pub async fn post(
        &self,
        fields: &Fields,
        extra: Option<wire::Extra<'_>>,
        body: &[u8],
    ) -> Result<Answer, String> {
        let request = wire::post_request(&self.target, &self.host_header, fields, extra, body);
        if let Some(connection) = self.pool.take() {
            match exchange(connection, &request).await {
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
        match exchange(connection, &request).await {
            Ok(answer) => Ok(answer.into_answer(&self.pool)),
            Err(Exchange::Closed(e) | Exchange::Failed(e)) => Err(e),
        }
    }

    /// A new connection, its TLS handshake done for `https://`; both within the connect
    /// timeout, as reqwest counts it.
    async fn connect(&self) -> Result<Connection, String> {
        let connecting = async {
            let mut last = None;
            let mut stream = None;
            for address in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
                match TcpStream::connect(address).await {
                    Ok(connected) => {
                        stream = Some(connected);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let Some(stream) = stream else {
                return Err(last.unwrap_or_else(|| io::Error::other("the host has no address")));
            };
            // The upstream socket carries small, latency-sensitive writes too.
            stream.set_nodelay(true)?;
            Ok(match &self.tls {
                None => Transport::Plain(stream),
                Some((config, name)) => {
                    let stream = tls_stream::connect(Arc::clone(config), name.clone(), stream);
                    Transport::Tls(Box::new(stream.await?))
                }
            })
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(transport)) => Ok(Connection::new(transport)),
            Ok(Err(e)) => Err(format!("connection failed ({e})")),
            Err(_) => Err("connection failed (timed out)".to_owned()),
        }
    }
}

enum Exchange {
    /// The connection closed (or was reset) before any answer came.
    Closed(String),
    Failed(String),
}

struct Headed {
    head: Head,
    connection: Connection,
}

impl Headed {
    fn into_answer(self, pool: &Arc<Pool>) -> Answer {
        let Head {
            status,
            content_type,
            retry_after,
            framing,
            keep_alive,
        } = self.head;
        Answer {
            status,
            content_type,
            retry_after,
            body: Body::new(self.connection, framing, keep_alive, Arc::clone(pool)),
        }
    }
}

/// Writes `request` on `connection` and reads until the answer's head is in.
async fn exchange(mut connection: Connection, request: &[u8]) -> Result<Headed, Exchange> {
    let mut written = 0;
    let head = poll_fn(|cx| {
        if let Err(e) = std::task::ready!(connection.poll_write_all(cx, request, &mut written)) {
            return Poll::Ready(Err(io_failure(&e, true)));
        }
        loop {
            match wire::take_head(&mut connection.buf) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(WireError(what)) => {
                    return Poll::Ready(Err(Exchange::Failed(format!("request failed ({what})"))));
                }
            }
            // Bytes of an answer already read mean the upstream did answer: then a broken
            // connection is a failed request, not a closed idle one.
            let unanswered = connection.buf.is_empty();
            match std::task::ready!(connection.poll_fill(cx)) {
                Ok(0) if unanswered => {
                    return Poll::Ready(Err(Exchange::Closed(
                        "request failed (the upstream closed the connection without answering)"
                            .to_owned(),
                    )));
                }
                Ok(0) => {
                    return Poll::Ready(Err(Exchange::Failed(
                        "request failed (the upstream closed the connection in the middle of \
                         the answer's head)"
                            .to_owned(),
                    )));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(io_failure(&e, unanswered))),
            }
        }
    })
    .await?;
    Ok(Headed { head, connection })
}

/// A socket error while the request was written or its answer awaited: `Closed` if the
/// connection was shut before anything of an answer came.
fn io_failure(error: &io::Error, unanswered: bool) -> Exchange {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, WriteZero};
    let message = format!("request failed ({error})");
    if unanswered
        && matches!(
            error.kind(),
            BrokenPipe | ConnectionAborted | ConnectionReset | WriteZero
        )
    {
        Exchange::Closed(message)
    } else {
        Exchange::Failed(message)
    }
}
