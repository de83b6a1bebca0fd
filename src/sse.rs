//! Server-Sent Events on the way out: response headers and heartbeats.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

/// The comment line sent when a stream has been quiet for a heartbeat period.
pub const PING: &[u8] = b": ping\n\n";

/// A `200 text/event-stream` response builder. `X-Accel-Buffering: no` makes nginx pass
/// events through even when its own buffering is on; the gateway never compresses SSE.
pub fn ok() -> HttpResponseBuilder {
    // Static names and values: with `&str`s each would be checked and copied per response.
    let static_value = HeaderValue::from_static;
    let mut builder = HttpResponse::Ok();
    builder
        .insert_header((header::CONTENT_TYPE, static_value("text/event-stream")))
        .insert_header((header::CACHE_CONTROL, static_value("no-cache")))
        .insert_header((X_ACCEL_BUFFERING, static_value("no")));
    builder
}

const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pin_project_lite::pin_project! {
    /// Wraps a stream of SSE bytes so that a `: ping` goes out whenever it has been silent
    /// for `period`. Besides keeping proxies from timing the stream out, the write is what
    /// lets the server notice a client that vanished without closing its connection.
    ///
    /// The stream and the timer are held inline, not boxed: the response body that holds
    /// this is boxed once as a whole, and two more allocations per request bought nothing.
    pub struct Heartbeat<S> {
        #[pin]
        inner: S,
        #[pin]
        sleep: Sleep,
        period: Duration,
        // When the last item went out. The timer is re-armed lazily from this when it
        // fires, rather than reset on every event: a busy stream never touches the wheel.
        last_item: Instant,
    }
}

impl<S> Heartbeat<S> {
    pub fn new(inner: S, period: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(period),
            period,
            last_item: Instant::now(),
        }
    }
}

impl<S, E> Stream for Heartbeat<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let period = *this.period;
        if let Poll::Ready(item) = this.inner.poll_next(cx) {
            if item.is_some() {
                *this.last_item = Instant::now();
            }
            return Poll::Ready(item);
        }
        while this.sleep.as_mut().poll(cx).is_ready() {
            let due = *this.last_item + period;
            let now = Instant::now();
            if now >= due {
                *this.last_item = now;
                this.sleep.as_mut().reset(now + period);
                return Poll::Ready(Some(Ok(Bytes::from_static(PING))));
            }
            this.sleep.as_mut().reset(due);
        }
        Poll::Pending
    }
}
