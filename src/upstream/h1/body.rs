//! An upstream answer's body, read by polling its connection in the reader's own task.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;
use hyper::body::{Body as _, Incoming};

use super::pool::{Connection, Pool};

/// The body of one answer. Polling it drives the connection, so the bytes the upstream sent
/// are relayed in the same wake-up that read them, with no hand-over to another task.
/// Dropped before its end, it closes the connection, which tells the upstream to stop, unless
/// the rest has already arrived.
pub struct Body {
    incoming: Incoming,
    /// `None` once the connection has closed or failed.
    connection: Option<Box<Connection>>,
    /// Why the connection ended, reported if the body then ends short of its length.
    failure: Option<hyper::Error>,
    pool: Arc<Pool>,
    over: bool,
}

impl Body {
    pub fn new(incoming: Incoming, connection: Option<Box<Connection>>, pool: Arc<Pool>) -> Self {
        Self {
            incoming,
            connection,
            failure: None,
            pool,
            over: false,
        }
    }

    /// What the connection has handed over. Polled without this task's waker: only this
    /// body's [`Body::drive`] adds to it, and the body looks again after every drive, so a
    /// wake-up from the hand-over would only poll this task once more for nothing.
    fn poll_incoming(&mut self) -> Poll<Option<Result<Bytes, String>>> {
        let mut unwoken = Context::from_waker(Waker::noop());
        loop {
            match Pin::new(&mut self.incoming).poll_frame(&mut unwoken) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    // A broken body is over: nothing more is read, and its connection is not
                    // kept.
                    self.over = true;
                    self.connection = None;
                    return Poll::Ready(Some(Err(describe(&e))));
                }
                Poll::Ready(None) => {
                    self.over = true;
                    return Poll::Ready(match self.failure.take() {
                        Some(e) => Some(Err(describe(&e))),
                        None => {
                            self.check_in();
                            None
                        }
                    });
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The answer was read to its end: the connection goes back to the pool, which checks
    /// that it is ready for another request.
    fn check_in(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool.put(connection);
        }
    }

    /// Drives the connection once; `true` if it may have produced more of the body.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(connection) = &mut self.connection else {
            return false;
        };
        match Pin::new(&mut connection.driver).poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                self.connection = None;
                self.failure = result.err();
                true
            }
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, String>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.over {
            return Poll::Ready(None);
        }
        // What the connection already read comes first; only then is the socket read, and
        // what that produced is taken in the same poll.
        if let Poll::Ready(item) = this.poll_incoming() {
            return Poll::Ready(item);
        }
        while this.drive(cx) {
            if let Poll::Ready(item) = this.poll_incoming() {
                return Poll::Ready(item);
            }
            if this.connection.is_some() {
                break;
            }
        }
        Poll::Pending
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.over || self.connection.is_none() {
            return;
        }
        // The reader stopped early. Usually the rest of the body is already in (the reader
        // stops at `[DONE]`, and the end of the chunked body comes in the same read): then
        // the connection can serve again. If not, dropping it closes it, which stops an
        // upstream still generating. (hyper's own connection task does the same.)
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(Ok(_))) = Pin::new(&mut *self).poll_next(&mut cx) {}
    }
}

/// A transport error with its root cause.
fn describe(error: &hyper::Error) -> String {
    super::describe_chain("the response body broke off", error)
}
