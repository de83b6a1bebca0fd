//! The driven client against a keep-alive upstream on plain threads and blocking sockets, so
//! that what the upstream sees never depends on the test's runtime getting to run. Each test
//! of a connection's life runs over plain TCP and over TLS (`plain::` and `tls::`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{self, HeaderMap};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::{RootCertStore, ServerConnection, StreamOwned};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// How the upstream answers every request.
#[derive(Clone, Copy)]
enum Reply {
    /// Two events and the end of the body in one write; the connection stays open.
    KeepAlive,
    /// The same, then the upstream closes the connection.
    ThenClose,
    /// One event, then nothing until the gateway hangs up.
    Hold,
}

enum Seen {
    /// The upstream closed a connection after answering.
    Closed,
    /// The gateway hung up in the middle of an answer.
    HungUp,
}

#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    Http,
    Https,
}

struct Upstream {
    address: SocketAddr,
    scheme: Scheme,
    /// The upstream's certificate, for a client to trust (https).
    certificate: CertificateDer<'static>,
    accepted: Arc<AtomicUsize>,
    requests: mpsc::Receiver<String>,
    seen: mpsc::Receiver<Seen>,
    /// The protocol each TLS handshake agreed by ALPN.
    protocols: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
}

impl Upstream {
    fn start(reply: Reply, scheme: Scheme) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (certificate, tls) = server_tls();
        let accepted = Arc::new(AtomicUsize::new(0));
        let protocols = Arc::new(Mutex::new(Vec::new()));
        let (request_tx, requests) = mpsc::channel();
        let (seen_tx, seen) = mpsc::channel();
        let (count, agreed) = (Arc::clone(&accepted), Arc::clone(&protocols));
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(socket) = socket else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (request_tx, seen_tx) = (request_tx.clone(), seen_tx.clone());
                let (tls, agreed) = (Arc::clone(&tls), Arc::clone(&agreed));
                std::thread::spawn(move || match scheme {
                    Scheme::Http => serve(socket, reply, &request_tx, &seen_tx),
                    Scheme::Https => {
                        let mut stream =
                            StreamOwned::new(ServerConnection::new(tls).unwrap(), socket);
                        while stream.conn.is_handshaking() {
                            if stream.conn.complete_io(&mut stream.sock).is_err() {
                                return;
                            }
                        }
                        let protocol = stream.conn.alpn_protocol().map(<[u8]>::to_vec);
                        agreed.lock().unwrap().push(protocol);
                        serve(stream, reply, &request_tx, &seen_tx);
                    }
                });
            }
        });
        Upstream {
            address,
            scheme,
            certificate,
            accepted,
            requests,
            seen,
            protocols,
        }
    }

    fn client(&self) -> Http1 {
        self.client_trusting(&self.certificate)
    }

    fn client_trusting(&self, certificate: &CertificateDer<'static>) -> Http1 {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let url = url::Url::parse(&format!("{scheme}://{}/v1/chat/completions", self.address));
        Http1::trusting(&url.unwrap(), WAIT, client_tls(certificate)).expect("a driven endpoint")
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A new self-signed certificate for 127.0.0.1, and a server configuration with it that
/// offers HTTP/2 before HTTP/1.1, as API servers do.
fn server_tls() -> (CertificateDer<'static>, Arc<rustls::ServerConfig>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (cert.der().clone(), Arc::new(config))
}

fn client_tls(certificate: &CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(certificate.clone()).unwrap();
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The upstream's side of a connection, plain or TLS.
trait Wire: Read + Write {
    /// Ends the connection as a server that is done with it does.
    fn close(&mut self);
}

impl Wire for TcpStream {
    fn close(&mut self) {
        self.shutdown(std::net::Shutdown::Both).unwrap();
    }
}

impl Wire for StreamOwned<ServerConnection, TcpStream> {
    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
        self.sock.shutdown(std::net::Shutdown::Both).unwrap();
    }
}

fn serve(
    socket: impl Wire,
    reply: Reply,
    requests: &mpsc::Sender<String>,
    seen: &mpsc::Sender<Seen>,
) {
    let mut reader = BufReader::new(socket);
    loop {
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        requests.send(head).unwrap();
        let events = match reply {
            Reply::Hold => "e\r\ndata: [DONE]\n\n\r\n",
            _ => "a\r\ndata: hi\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n",
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{events}"
        );
        let socket = reader.get_mut();
        socket.write_all(answer.as_bytes()).unwrap();
        socket.flush().unwrap();
        match reply {
            Reply::KeepAlive => {}
            Reply::ThenClose => {
                socket.close();
                seen.send(Seen::Closed).unwrap();
                return;
            }
            Reply::Hold => {
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
                seen.send(Seen::HungUp).unwrap();
                return;
            }
        }
    }
}

fn fields() -> Fields {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Fields::new(&headers)
}

async fn post(client: &Http1) -> Answer {
    let answer = client.post(&fields(), None, b"{}").await;
    let answer = answer.expect("an answer");
    assert_eq!(answer.status, 200);
    answer
}

async fn read_all(body: Body) -> String {
    let chunks: Vec<_> = body.collect().await;
    let bytes: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    String::from_utf8(bytes).unwrap()
}

async fn one_connection_serves_answer_after_answer(scheme: Scheme) {
    let upstream = Upstream::start(Reply::KeepAlive, scheme);
    let client = upstream.client();
    for _ in 0..3 {
        let body = post(&client).await.body;
        assert_eq!(read_all(body).await, "data: hi\n\ndata: [DONE]\n\n");
    }
    assert_eq!(upstream.accepted(), 1);
    assert_eq!(client.pool.idle(), 1);
    // Only HTTP/1.1 is offered, so a server that prefers HTTP/2 answers in HTTP/1.1.
    let agreed = upstream.protocols.lock().unwrap().clone();
    match scheme {
        Scheme::Http => assert!(agreed.is_empty()),
        Scheme::Https => assert_eq!(agreed, [Some(b"http/1.1".to_vec())]),
    }
    let head = upstream.requests.recv_timeout(WAIT).unwrap();
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    let host = format!("host: {}\r\n", upstream.address);
    assert!(head.to_ascii_lowercase().contains(&host), "{head}");
}

/// The point of driving connections in the stream's own task: the request is on the wire
/// after the first poll, with no other task having to run. The upstream's threads see it
/// while this runtime's only thread is blocked waiting for them.
async fn the_request_is_written_in_the_first_poll(scheme: Scheme) {
    let upstream = Upstream::start(Reply::KeepAlive, scheme);
    let client = upstream.client();
    read_all(post(&client).await.body).await;
    upstream.requests.recv_timeout(WAIT).unwrap();

    let fields = fields();
    let mut second = std::pin::pin!(client.post(&fields, None, b"{}"));
    let _ = second
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    let head = upstream.requests.recv_timeout(WAIT);
    assert!(
        head.is_ok(),
        "the request was not written in the first poll"
    );
    assert_eq!(read_all(second.await.unwrap().body).await.len(), 24);
}

async fn an_answer_left_at_done_keeps_its_connection_when_its_end_is_in(scheme: Scheme) {
    let upstream = Upstream::start(Reply::KeepAlive, scheme);
    let client = upstream.client();
    let mut body = post(&client).await.body;
    assert_eq!(body.next().await.unwrap().unwrap(), "data: hi\n\n");
    drop(body);
    assert_eq!(
        client.pool.idle(),
        1,
        "the connection went back to the pool"
    );
    read_all(post(&client).await.body).await;
    assert_eq!(upstream.accepted(), 1);
}

async fn an_answer_dropped_midway_closes_its_connection(scheme: Scheme) {
    let upstream = Upstream::start(Reply::Hold, scheme);
    let client = upstream.client();
    let mut body = post(&client).await.body;
    assert_eq!(body.next().await.unwrap().unwrap(), "data: [DONE]\n\n");
    drop(body);
    assert!(matches!(upstream.seen.recv_timeout(WAIT), Ok(Seen::HungUp)));
    assert_eq!(client.pool.idle(), 0);
}

async fn a_kept_connection_the_upstream_closed_is_replaced(scheme: Scheme) {
    let upstream = Upstream::start(Reply::ThenClose, scheme);
    let client = upstream.client();
    read_all(post(&client).await.body).await;
    assert!(matches!(upstream.seen.recv_timeout(WAIT), Ok(Seen::Closed)));
    // Whether the close was noticed while the connection sat in the pool or only when the
    // request went out on it, the request is answered on a new connection.
    assert_eq!(read_all(post(&client).await.body).await.len(), 24);
    assert_eq!(upstream.accepted(), 2);
}

/// Each test of a connection's life, once over plain TCP and once over TLS.
macro_rules! over_http_and_https {
    ($($test:ident),* $(,)?) => {
        mod plain {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Scheme::Http).await;
            })*
        }
        mod tls {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Scheme::Https).await;
            })*
        }
    };
}

over_http_and_https!(
    one_connection_serves_answer_after_answer,
    the_request_is_written_in_the_first_poll,
    an_answer_left_at_done_keeps_its_connection_when_its_end_is_in,
    an_answer_dropped_midway_closes_its_connection,
    a_kept_connection_the_upstream_closed_is_replaced,
);

#[tokio::test]
async fn a_certificate_not_trusted_fails_the_connection() {
    let upstream = Upstream::start(Reply::KeepAlive, Scheme::Https);
    let (stranger, _) = server_tls();
    let client = upstream.client_trusting(&stranger);
    let Err(error) = client.post(&fields(), None, b"{}").await else {
        panic!("an upstream with a certificate nobody vouches for was answered");
    };
    assert!(
        error.starts_with("connection failed (invalid peer certificate"),
        "{error}"
    );
    assert!(upstream.requests.try_recv().is_err(), "a request went out");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_the_connection() {
    let upstream = Upstream::start(Reply::KeepAlive, Scheme::Https);
    let url = format!(
        "https://localhost:{}/v1/chat/completions",
        upstream.address.port()
    );
    let client = Http1::trusting(
        &url::Url::parse(&url).unwrap(),
        WAIT,
        client_tls(&upstream.certificate),
    );
    let Err(error) = client.unwrap().post(&fields(), None, b"{}").await else {
        panic!("a certificate for 127.0.0.1 was taken for localhost");
    };
    assert!(
        error.contains("certificate not valid for name \"localhost\""),
        "{error}"
    );
}

#[test]
fn only_endpoints_without_credentials_or_proxy_are_driven() {
    let driven = |url: &str| {
        Http1::for_endpoint(&url::Url::parse(url).unwrap(), WAIT).map(|client| {
            (
                client.host,
                client.port,
                client.target,
                client.tls.is_some(),
            )
        })
    };
    assert_eq!(
        driven("http://127.0.0.1:8000/v1/chat/completions?x=1"),
        Some((
            "127.0.0.1".into(),
            8000,
            "/v1/chat/completions?x=1".into(),
            false
        ))
    );
    assert_eq!(
        driven("http://[::1]/v1/chat/completions"),
        Some(("::1".into(), 80, "/v1/chat/completions".into(), false))
    );
    assert_eq!(
        driven("https://api.openai.com/v1/chat/completions"),
        Some((
            "api.openai.com".into(),
            443,
            "/v1/chat/completions".into(),
            true
        ))
    );
    assert!(driven("http://user:pass@localhost/v1/chat/completions").is_none());
    assert!(driven("https://user@api.openai.com/v1/chat/completions").is_none());
    assert!(driven("ftp://example.com/v1/chat/completions").is_none());
}
