//! A forward proxy that speaks only `CONNECT`, as corporate proxies in front of `https://`
//! APIs do: it records each tunnel's target, answers `200`, then copies bytes both ways, so
//! TLS runs end to end between the gateway and the upstream.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct ConnectProxy {
    pub url: String,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

/// A `CONNECT` asked for: its `host:port` and its whole request head.
#[derive(Clone)]
pub struct Tunnel {
    pub target: String,
    pub head: String,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, seen.clone()));
            }
        });
        ConnectProxy { url, tunnels }
    }

    /// Every `CONNECT` asked for, in order.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

async fn tunnel(mut client: TcpStream, tunnels: Arc<Mutex<Vec<Tunnel>>>) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        // Anything but a tunnel is refused, so a client that sent a plain request to the
        // proxy (not tunnelling TLS) fails the test instead of passing through.
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let target = target.to_owned();
    tunnels.lock().unwrap().push(Tunnel {
        target: target.clone(),
        head: head.clone(),
    });
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// The request head, up to its blank line, read a byte at a time so that nothing after it
/// (the client's TLS hello, once the `200` is out) is taken from the tunnel.
async fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}
