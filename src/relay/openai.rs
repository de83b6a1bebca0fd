//! The OpenAI dialect: each upstream chunk relayed as `data: {chunk}` with its JSON intact,
//! then `data: [DONE]`. A failure after the headers went out is an `{"error":…}` event the
//! SDKs understand, then `[DONE]`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Finish, Outcome};
use crate::backend::{Backend, ChunkStream, Opened};
use crate::cancel::Cancelled;
use crate::upstream::{Chunk, UpstreamError, framed};

pub type Opening = Pin<Box<dyn Future<Output = Result<Opened, UpstreamError>>>>;

/// Where a relay starts: the upstream's first event is in (nearly always, as the handler
/// waits for it), or it is still coming.
pub enum Start {
    Opened(Opened),
    Opening(Opening),
}

const DONE: &[u8] = b"data: [DONE]\n\n";

enum Phase {
    Opening(Opening),
    Streaming(ChunkStream),
    Over,
}

pin_project_lite::pin_project! {
    struct Relay {
        // Registered once for the whole answer (see `Cancelled`). Inline: the body holding
        // it is boxed already.
        #[pin]
        shutdown: Cancelled,
        state: State,
    }
}

struct State {
    phase: Phase,
    include_usage: bool,
    outcome: Outcome,
    /// Makes upstream error text safe to show the client.
    backend: Backend,
}

/// The response body for a streaming completion, from the upstream's first event, or from
/// the wait for it. Dropping the body drops the upstream request with it.
pub fn body(
    start: Start,
    include_usage: bool,
    shutdown: CancellationToken,
    mut outcome: Outcome,
    backend: Backend,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let phase = match start {
        Start::Opened(opened) => streaming(&mut outcome, opened),
        Start::Opening(opening) => Phase::Opening(opening),
    };
    Relay {
        shutdown: Cancelled::new(shutdown),
        state: State {
            phase,
            include_usage,
            outcome,
            backend,
        },
    }
}

/// A hand-written stream rather than `futures::stream::unfold` over an `async fn`: unfold
/// moves the whole relay into a new future and back out again for every event.
impl Stream for Relay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut relay = self.project();
        let this = &mut *relay.state;
        loop {
            // Shutdown first, so that a stream that never pauses still hears it.
            let step = match &mut this.phase {
                Phase::Over => return Poll::Ready(None),
                _ if relay.shutdown.as_mut().poll(cx).is_ready() => Err(Shutdown),
                Phase::Opening(opening) => match ready!(opening.as_mut().poll(cx)) {
                    Ok(opened) => {
                        this.phase = streaming(&mut this.outcome, opened);
                        continue;
                    }
                    Err(e) => Ok(Some(Err(e))),
                },
                Phase::Streaming(stream) => Ok(ready!(stream.as_mut().poll_next(cx))),
            };
            let frame = match step {
                Ok(Some(Ok(chunk))) => match this.frame(&chunk) {
                    Some(frame) => frame,
                    None => continue,
                },
                Ok(Some(Err(error))) => {
                    this.phase = Phase::Over;
                    this.outcome.finish(Finish::from_error(&error));
                    let message = this.backend.sanitize(&error.to_string());
                    error_frame(&message, error.code())
                }
                Ok(None) => {
                    this.phase = Phase::Over;
                    // `[DONE]` without a finish_reason is still a clean end.
                    this.outcome.finish(Finish::Upstream("stop".to_owned()));
                    Bytes::from_static(DONE)
                }
                Err(Shutdown) => {
                    this.phase = Phase::Over;
                    this.outcome.finish(Finish::Error("shutting_down"));
                    error_frame(
                        "the gateway is shutting down; the answer was cut short",
                        "shutting_down",
                    )
                }
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}

/// The phase once the upstream's first event is in; the outcome notes when it came.
fn streaming(outcome: &mut Outcome, opened: Opened) -> Phase {
    outcome.opened(opened.upstream_ttft);
    Phase::Streaming(opened.chunks)
}

impl State {
    /// The frame for a chunk, or `None` for a usage-only chunk the client did not ask for.
    fn frame(&mut self, chunk: &Chunk) -> Option<Bytes> {
        self.outcome.relayed();
        if chunk.has_delta() {
            self.outcome.delta();
        }
        if let Some(reason) = chunk.finish_reason() {
            self.outcome.finish(Finish::Upstream(reason.to_owned()));
        }
        let Some(usage) = chunk.usage() else {
            return Some(chunk.event());
        };
        self.outcome.usage = Some(usage);
        match (self.include_usage, chunk.choices_empty) {
            (true, _) => Some(chunk.event()),
            (false, true) => None,
            (false, false) => Some(framed(&chunk.without_usage())),
        }
    }
}

struct Shutdown;

/// An error event in the shape OpenAI's SDKs raise from, followed by `[DONE]`.
fn error_frame(message: &str, code: &str) -> Bytes {
    let event = json!({"error": {"message": message, "type": "upstream_error", "code": code}});
    let mut frame = format!("data: {event}\n\n").into_bytes();
    frame.extend_from_slice(DONE);
    Bytes::from(frame)
}
