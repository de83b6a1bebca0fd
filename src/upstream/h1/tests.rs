//! The driven client against a keep-alive upstream on plain threads and blocking sockets, so
//! that what the upstream sees never depends on the test's runtime getting to run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context, Waker};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{self, HeaderMap};

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

struct Upstream {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: mpsc::Receiver<String>,
    seen: mpsc::Receiver<Seen>,
}

impl Upstream {
    fn start(reply: Reply) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (request_tx, requests) = mpsc::channel();
        let (seen_tx, seen) = mpsc::channel();
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(socket) = socket else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (request_tx, seen_tx) = (request_tx.clone(), seen_tx.clone());
                std::thread::spawn(move || serve(socket, reply, &request_tx, &seen_tx));
            }
        });
        Upstream {
            address,
            accepted,
            requests,
            seen,
        }
    }

    fn client(&self) -> Http1 {
        let url = url::Url::parse(&format!("http://{}/v1/chat/completions", self.address));
        Http1::for_endpoint(&url.unwrap(), WAIT).expect("a plain-http endpoint")
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve(
    socket: TcpStream,
    reply: Reply,
    requests: &mpsc::Sender<String>,
    seen: &mpsc::Sender<Seen>,
) {
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut socket = socket;
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
        socket.write_all(answer.as_bytes()).unwrap();
        match reply {
            Reply::KeepAlive => {}
            Reply::ThenClose => {
                socket.shutdown(std::net::Shutdown::Both).unwrap();
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

#[tokio::test]
async fn one_connection_serves_answer_after_answer() {
    let upstream = Upstream::start(Reply::KeepAlive);
    let client = upstream.client();
    for _ in 0..3 {
        let body = post(&client).await.body;
        assert_eq!(read_all(body).await, "data: hi\n\ndata: [DONE]\n\n");
    }
    assert_eq!(upstream.accepted(), 1);
    assert_eq!(client.pool.idle(), 1);
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
#[tokio::test]
async fn the_request_is_written_in_the_first_poll() {
    let upstream = Upstream::start(Reply::KeepAlive);
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

#[tokio::test]
async fn an_answer_left_at_done_keeps_its_connection_when_its_end_is_in() {
    let upstream = Upstream::start(Reply::KeepAlive);
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

#[tokio::test]
async fn an_answer_dropped_midway_closes_its_connection() {
    let upstream = Upstream::start(Reply::Hold);
    let client = upstream.client();
    let mut body = post(&client).await.body;
    assert_eq!(body.next().await.unwrap().unwrap(), "data: [DONE]\n\n");
    drop(body);
    assert!(matches!(upstream.seen.recv_timeout(WAIT), Ok(Seen::HungUp)));
    assert_eq!(client.pool.idle(), 0);
}

#[tokio::test]
async fn a_kept_connection_the_upstream_closed_is_replaced() {
    let upstream = Upstream::start(Reply::ThenClose);
    let client = upstream.client();
    read_all(post(&client).await.body).await;
    assert!(matches!(upstream.seen.recv_timeout(WAIT), Ok(Seen::Closed)));
    // Whether the close was noticed while the connection sat in the pool or only when the
    // request went out on it, the request is answered on a new connection.
    assert_eq!(read_all(post(&client).await.body).await.len(), 24);
    assert_eq!(upstream.accepted(), 2);
}

#[test]
fn only_plain_http_endpoints_without_credentials_are_driven() {
    let driven = |url: &str| {
        Http1::for_endpoint(&url::Url::parse(url).unwrap(), WAIT)
            .map(|client| (client.host, client.port, client.target))
    };
    assert_eq!(
        driven("http://127.0.0.1:8000/v1/chat/completions?x=1"),
        Some(("127.0.0.1".into(), 8000, "/v1/chat/completions?x=1".into()))
    );
    assert_eq!(
        driven("http://[::1]/v1/chat/completions"),
        Some(("::1".into(), 80, "/v1/chat/completions".into()))
    );
    assert!(driven("https://api.openai.com/v1/chat/completions").is_none());
    assert!(driven("http://user:pass@localhost/v1/chat/completions").is_none());
}
