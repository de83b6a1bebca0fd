//! The OpenAI dialect: each upstream chunk relayed as `data: {chunk}` with its JSON intact,
//! then `data: [DONE]`. A failure after the headers went out is an `{"error":…}` event the
//! SDKs understand, then `[DONE]`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{Finish, Outcome};
use crate::backend::{ChunkStream, Opened};
use crate::upstream::{Chunk, UpstreamError};

pub type Opening = Pin<Box<dyn Future<Output = Result<Opened, UpstreamError>>>>;

const DONE: &[u8] = b"data: [DONE]\n\n";

enum Phase {
    Opening(Opening),
    Streaming(ChunkStream),
    Over,
}

struct Relay {
    phase: Phase,
    include_usage: bool,
    /// Registered once: asking the token for a new waiter on every event would take its
    /// lock and queue a waiter each time.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    outcome: Outcome,
    sanitize: Box<dyn Fn(&str) -> String>,
}

/// The response body for a streaming completion. `opening` resolves to the upstream's
/// stream (it may already have, or still be waiting for the first event). Dropping the body
/// drops the upstream request with it.
pub fn body(
    opening: Opening,
    include_usage: bool,
    shutdown: CancellationToken,
    outcome: Outcome,
    sanitize: Box<dyn Fn(&str) -> String>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let relay = Relay {
        phase: Phase::Opening(opening),
        include_usage,
        shutdown: Box::pin(shutdown.cancelled_owned()),
        outcome,
        sanitize,
    };
    futures::stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok(frame), relay))
    })
}

impl Relay {
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            let step = match &mut self.phase {
                Phase::Over => return None,
                Phase::Opening(opening) => tokio::select! {
                    biased;
                    _ = &mut self.shutdown => Err(Shutdown),
                    opened = opening => Ok(match opened {
                        Ok(opened) => {
                            self.outcome.opened(opened.upstream_ttft);
                            self.phase = Phase::Streaming(opened.chunks);
                            continue;
                        }
                        Err(e) => Some(Err(e)),
                    }),
                },
                Phase::Streaming(stream) => tokio::select! {
                    biased;
                    _ = &mut self.shutdown => Err(Shutdown),
                    item = stream.next() => Ok(item),
                },
            };
            match step {
                Ok(Some(Ok(chunk))) => {
                    if let Some(frame) = self.frame(&chunk) {
                        return Some(frame);
                    }
                }
                Ok(Some(Err(error))) => {
                    self.phase = Phase::Over;
                    self.outcome.finish(Finish::from_error(&error));
                    let message = (self.sanitize)(&error.to_string());
                    return Some(error_frame(&message, error.code()));
                }
                Ok(None) => {
                    self.phase = Phase::Over;
                    // `[DONE]` without a finish_reason is still a clean end.
                    self.outcome.finish(Finish::Upstream("stop".to_owned()));
                    return Some(Bytes::from_static(DONE));
                }
                Err(Shutdown) => {
                    self.phase = Phase::Over;
                    self.outcome.finish(Finish::Error("shutting_down"));
                    return Some(error_frame(
                        "the gateway is shutting down; the answer was cut short",
                        "shutting_down",
                    ));
                }
            }
        }
    }

    /// The frame for a chunk, or `None` for a usage-only chunk the client did not ask for.
    fn frame(&mut self, chunk: &Chunk) -> Option<Bytes> {
        self.outcome.relayed();
        if chunk.has_delta() {
            self.outcome.delta();
        }
        if let Some(reason) = &chunk.finish_reason {
            self.outcome.finish(Finish::Upstream(reason.clone()));
        }
        let raw = match chunk.usage {
            None => chunk.raw().clone(),
            Some(usage) => {
                self.outcome.usage = Some(usage);
                match (self.include_usage, chunk.choices_empty) {
                    (true, _) => chunk.raw().clone(),
                    (false, true) => return None,
                    (false, false) => chunk.without_usage(),
                }
            }
        };
        let mut frame = BytesMut::with_capacity(raw.len() + 8);
        frame.put_slice(b"data: ");
        frame.put_slice(&raw);
        frame.put_slice(b"\n\n");
        Some(frame.freeze())
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
