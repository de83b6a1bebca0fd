//! The load generator's HTTP/1.1 client: one task owns one socket, writes a request that was
//! serialised once, parses the response head with `httparse` and decodes the body's framing
//! in place. Every byte is stamped with the time of the `read` that brought it.
//!
//! Why not hyper's client: it drives each connection from a task of its own and hands the
//! head and every body chunk to the request's task through a channel, so what the load
//! generator timestamps is when *its* scheduler got round to that hand-over. In a burst of 64
//! streams that queue is the load generator's own, and it is longer for a server that sends
//! its head together with the first event (streamgate commits the answer only then, as its
//! contract asks) than for one that sent the head 20 ms earlier. Stamping at the read
//! measures the system under test instead of the load generator.

use std::{io, net::SocketAddr};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// Room made for each read.
const READ_SIZE: usize = 16 * 1024;
/// Longest response head, or chunk-size or trailer line, accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// When the last read returned: the arrival time of everything it brought.
    read_at: Instant,
    reusable: bool,
}

/// A response whose head has been read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// When the read that completed the head returned.
    pub head_at: Instant,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked(Chunk),
    Length(u64),
    /// Until the server closes the connection.
    Close,
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// The connection broke or the server spoke something that is not HTTP/1.1.
#[derive(Debug)]
pub struct WireError;

impl From<io::Error> for WireError {
    fn from(_: io::Error) -> Self {
        WireError
    }
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_SIZE),
            read_at: Instant::now(),
            reusable: true,
        })
    }

    /// True when the last response was read to its end and the server keeps the connection.
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    /// Writes `request` (a whole serialised request) and reads the response head.
    pub async fn send(&mut self, request: &[u8]) -> Result<Response, WireError> {
        self.reusable = false;
        self.stream.write_all(request).await?;
        loop {
            if let Some(resp) = self.parse_head()? {
                return Ok(resp);
            }
            if self.buf.len() > MAX_HEAD || self.read().await? == 0 {
                return Err(WireError);
            }
        }
    }

    /// Delivers the next body bytes to `on_data` with their arrival time: what is already
    /// buffered, else what one read brings. Returns `Ok(true)` once the body has ended.
    pub async fn body(
        &mut self,
        resp: &mut Response,
        mut on_data: impl FnMut(&[u8], Instant),
    ) -> Result<bool, WireError> {
        loop {
            let at = self.read_at;
            let delivered = decode(&mut resp.framing, &mut self.buf, |d| on_data(d, at))?;
            if resp.framing == Framing::Done {
                self.reusable = resp.keep_alive;
                return Ok(true);
            }
            if delivered {
                return Ok(false);
            }
            if self.read().await? == 0 {
                if resp.framing == Framing::Close {
                    resp.framing = Framing::Done;
                    return Ok(true);
                }
                return Err(WireError);
            }
        }
    }

    async fn read(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        let n = self.stream.read_buf(&mut self.buf).await?;
        self.read_at = Instant::now();
        Ok(n)
    }

    fn parse_head(&mut self) -> Result<Option<Response>, WireError> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Response::new(&mut headers);
        let len = match head.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(WireError),
        };
        let status = head.code.ok_or(WireError)?;
        let mut keep_alive = head.version == Some(1);
        let mut chunked = false;
        let mut length = None;
        for h in head.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(h.value).map_err(|_| WireError)?;
                length = Some(text.trim().parse::<u64>().map_err(|_| WireError)?);
            } else if h.name.eq_ignore_ascii_case("connection") {
                keep_alive = !h.value.eq_ignore_ascii_case(b"close");
            }
        }
        let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Done
        } else if chunked {
            Framing::Chunked(Chunk::Size)
        } else if let Some(n) = length {
            if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            }
        } else {
            keep_alive = false;
            Framing::Close
        };
        self.buf.advance(len);
        Ok(Some(Response {
            status,
            head_at: self.read_at,
            framing,
            keep_alive,
        }))
    }
}

/// Decodes as much of `buf` as `framing` allows, passing body bytes to `on_data` and
/// consuming what it used. Returns whether any body bytes were delivered.
fn decode(
    framing: &mut Framing,
    buf: &mut BytesMut,
    mut on_data: impl FnMut(&[u8]),
) -> Result<bool, WireError> {
    let mut delivered = false;
    loop {
        match framing {
            Framing::Done => return Ok(delivered),
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(delivered);
                }
                on_data(buf);
                buf.clear();
                return Ok(true);
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(delivered);
                }
                let take = (*left).min(buf.len() as u64) as usize;
                on_data(&buf[..take]);
                buf.advance(take);
                *left -= take as u64;
                if *left == 0 {
                    *framing = Framing::Done;
                }
                return Ok(true);
            }
            Framing::Chunked(state) => match *state {
                Chunk::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(delivered);
                    };
                    let hex = line[..].split(|&b| b == b';').next().unwrap_or(&[]);
                    let text = std::str::from_utf8(hex).map_err(|_| WireError)?;
                    let size = u64::from_str_radix(text.trim(), 16).map_err(|_| WireError)?;
                    *state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(delivered);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    on_data(&buf[..take]);
                    buf.advance(take);
                    delivered = true;
                    *state = if left == take as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take as u64)
                    };
                }
                Chunk::DataEnd => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(delivered);
                    };
                    if !line.is_empty() {
                        return Err(WireError);
                    }
                    *state = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(delivered);
                    };
                    if line.is_empty() {
                        *framing = Framing::Done;
                    }
                }
            },
        }
    }
}

/// Takes one line (without its `\r\n` or `\n`) off the front of `buf`, if it is complete.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_HEAD {
            return Err(WireError);
        }
        return Ok(None);
    };
    let mut line = buf.split_to(nl + 1);
    line.truncate(nl);
    if line.last() == Some(&b'\r') {
        line.truncate(nl - 1);
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request on one connection with the next of `answers`,
    /// written in the given pieces.
    async fn server(answers: Vec<Vec<&'static [u8]>>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut req = vec![0u8; 4096];
            for pieces in answers {
                let _ = s.read(&mut req).await.expect("request");
                for p in pieces {
                    s.write_all(p).await.expect("write");
                    s.flush().await.expect("flush");
                    tokio::task::yield_now().await;
                }
            }
        });
        addr
    }

    async fn read_all(c: &mut Conn, r: &mut Response) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        while !c.body(r, |d, _| out.extend_from_slice(d)).await? {}
        Ok(out)
    }

    #[test]
    fn chunked_body_fed_one_byte_at_a_time() {
        let wire = b"4\r\ndata\r\n3;x=y\r\n: p\r\n0\r\nt: 1\r\n\r\n";
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in wire {
            buf.extend_from_slice(&[b]);
            decode(&mut framing, &mut buf, |d| out.extend_from_slice(d)).expect("decode");
        }
        assert_eq!(out, b"data: p");
        assert_eq!(framing, Framing::Done);
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn chunked_split_anywhere_then_keep_alive() {
        let addr = server(vec![
            vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n6;ext=1\r\n world",
                b"\r\n0\r\nx-trailer: 1\r\n\r\n",
            ],
            vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno!"],
        ])
        .await;
        let mut c = Conn::connect(addr).await.expect("connect");
        let mut r = c.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("head");
        assert_eq!(r.status, 200);
        assert_eq!(
            read_all(&mut c, &mut r).await.expect("body"),
            b"hello world"
        );
        assert!(c.reusable());
        let mut r = c.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("head");
        assert_eq!(r.status, 404);
        assert_eq!(read_all(&mut c, &mut r).await.expect("body"), b"no!");
        assert!(c.reusable());
    }

    #[tokio::test]
    async fn close_delimited_body_and_connection_close() {
        let addr = server(vec![vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end"]]).await;
        let mut c = Conn::connect(addr).await.expect("connect");
        let mut r = c.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("head");
        assert_eq!(
            read_all(&mut c, &mut r).await.expect("body"),
            b"until the end"
        );
        assert!(!c.reusable());

        let addr = server(vec![vec![
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        ]])
        .await;
        let mut c = Conn::connect(addr).await.expect("connect");
        let mut r = c.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("head");
        assert_eq!(read_all(&mut c, &mut r).await.expect("body"), b"ok");
        assert!(!c.reusable());
    }

    #[tokio::test]
    async fn a_cut_chunked_body_and_garbage_are_errors() {
        let addr = server(vec![vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nshort",
        ]])
        .await;
        let mut c = Conn::connect(addr).await.expect("connect");
        let mut r = c.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("head");
        assert!(read_all(&mut c, &mut r).await.is_err());
        assert!(!c.reusable());

        let addr = server(vec![vec![b"SSH-2.0-OpenSSH\r\n\r\n"]]).await;
        let mut c = Conn::connect(addr).await.expect("connect");
        assert!(c.send(b"GET / HTTP/1.1\r\n\r\n").await.is_err());
    }

    #[tokio::test]
    async fn head_and_first_bytes_of_one_read_share_its_time() {
        let addr = server(vec![vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n",
            b"3\r\ntwo\r\n0\r\n\r\n",
        ]])
        .await;
        let mut c = Conn::connect(addr).await.expect("connect");
        let mut r = c.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("head");
        let mut seen = Vec::new();
        while !c
            .body(&mut r, |d, at| seen.push((d.to_vec(), at)))
            .await
            .expect("body")
        {}
        assert_eq!(seen[0].0, b"one");
        assert_eq!(
            seen[0].1, r.head_at,
            "the head's read brought the first chunk"
        );
        assert_eq!(seen.last().map(|s| s.0.as_slice()), Some(&b"two"[..]));
    }
}
