//! An upstream answer's body, read from its connection by the stream that relays it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;

use super::conn::Connection;
use super::pool::Pool;
use super::wire::{Framing, take_data};

/// The body of one answer. Polling it reads the socket, so the bytes the upstream sent are
/// relayed in the same wake-up that read them, with no hand-over to another task. Dropped
/// before its end, it closes the connection, which tells the upstream to stop, unless the
/// rest has already arrived.
pub struct Body {
    /// `None` once the body has ended or failed.
    connection: Option<Connection>,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<Pool>,
}

impl Body {
    pub fn new(
        connection: Connection,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
    ) -> Self {
        Self {
            connection: Some(connection),
            framing,
            keep_alive,
            pool,
        }
    }

    /// The answer was read to its end: the connection goes back to the pool if the upstream
    /// keeps it and sent nothing after the body; the pool checks that it is still open.
    fn check_in(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.keep_alive
            && connection.buf.is_empty()
        {
            self.pool.put(connection);
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, String>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(connection) = &mut this.connection else {
            return Poll::Ready(None);
        };
        // What was read already comes first; only then is the socket read, and what that
        // brought is taken in the same poll.
        loop {
            match take_data(&mut this.framing, &mut connection.buf) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if this.framing == Framing::Done => {
                    this.check_in();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => {
                    // A broken body is over, and its connection is not kept.
                    this.connection = None;
                    return Poll::Ready(Some(Err(format!("the response body broke off ({e})"))));
                }
            }
            match connection.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if this.framing == Framing::UntilClose => {
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(
                        "the response body broke off (the upstream closed the connection \
                         before the end of the answer)"
                            .to_owned(),
                    )));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(format!("the response body broke off ({e})"))));
                }
            }
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.connection.is_none() {
            return;
        }
        // The reader stopped early. Usually the rest of the body is already in (the reader
        // stops at `[DONE]`, and the end of the chunked body comes in the same read): then
        // the connection can serve again. If not, dropping it closes it, which stops an
        // upstream still generating.
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(Ok(_))) = Pin::new(&mut *self).poll_next(&mut cx) {}
    }
}
