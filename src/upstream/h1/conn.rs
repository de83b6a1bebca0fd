//! One HTTP/1.1 connection to the upstream: the socket and what has been read from it but
//! not yet taken.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::BytesMut;
use tokio::io::AsyncWrite;

use super::transport::Transport;

/// Room made for a read at least, and at most. A read that fills the room doubles it for the
/// next; one that uses little of it halves it again. Most reads bring one event of a few
/// hundred bytes, and an idle stream should not hold a large buffer.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;

pub struct Connection {
    stream: Transport,
    /// Read but not yet taken: the rest of a head, or body bytes.
    pub buf: BytesMut,
    read_size: usize,
}

impl Connection {
    pub fn new(stream: Transport) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            read_size: MIN_READ,
        }
    }

    /// Reads once into `buf`: `Ok(0)` at the end of the stream. Through tokio's `poll_read`,
    /// which, unlike `try_read`, forgets the socket's readiness after a short read, so the
    /// next poll waits for the next event instead of asking the kernel for nothing.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_size {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.buf
        ))?;
        if n == room {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(MIN_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes `bytes[*written..]`, advancing `written`; ready once all of it is written and,
    /// over TLS, flushed: rustls keeps the records a full socket did not take, and a request
    /// must not wait in them for the next write, which may never come.
    pub fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Idle and still open: nothing unread, and the upstream has neither closed it nor sent
    /// anything unasked. Looks without waiting (a closed socket is readable at once).
    pub fn is_reusable(&mut self) -> bool {
        self.buf.is_empty()
            && self
                .poll_fill(&mut Context::from_waker(Waker::noop()))
                .is_pending()
    }
}
