//! Drives one browser generation from the backend into its stream's log, apart from any
//! connection, until it finishes, fails, is cancelled or the gateway shuts down.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Entry;
use crate::backend::{Backend, ChunkStream};
use crate::cancel::Cancelled;
use crate::relay::browser::{write_delta, write_error, write_stop};
use crate::relay::{Finish, Outcome};
use crate::request::ChatRequest;
use crate::upstream::UpstreamError;

/// A stream's log may not grow past this; an answer this long is a runaway upstream.
const MAX_LOG_BYTES: usize = 16 * 1024 * 1024;

enum End {
    Done,
    Failed(UpstreamError),
    Cancelled,
    Shutdown,
    TooLong,
}

/// The generation's task. Not an `async fn`: one keeps every argument twice in its future
/// (as passed, and moved into its body), the parsed request among them. A task's future is
/// allocated at its largest state and held until the stream ends, which for an idle stream
/// can be minutes, so it should hold no more than relaying needs: the outcome and a few
/// handles (bench/run.sh scenario (c)).
pub fn run(
    entry: Arc<Entry>,
    backend: Backend,
    request: ChatRequest,
    shutdown: CancellationToken,
    mut outcome: Outcome,
) -> impl Future<Output = ()> {
    outcome.stream_id = Some(entry.id.clone());
    // Boxed, and owning the parsed request (messages and all), so that both go once the
    // upstream has answered: opening (connecting, sending, the HTTP client's state) is far
    // larger than relaying an idle stream.
    let opening = {
        let backend = backend.clone();
        let request_id = outcome.request_id().to_owned();
        Box::pin(async move { backend.open(&request, &request_id).await })
    };
    async move {
        // Each waiter is registered once for the whole generation, not once per event.
        let mut cancelled = std::pin::pin!(Cancelled::new(entry.cancelled()));
        let mut shutting_down = std::pin::pin!(Cancelled::new(shutdown));
        let opened = tokio::select! {
            biased;
            _ = &mut cancelled => Err(End::Cancelled),
            _ = &mut shutting_down => Err(End::Shutdown),
            opened = opening => opened.map_err(|e| {
                entry.set_opening_error(e.clone());
                End::Failed(e)
            }),
        };
        let end = match opened {
            Err(end) => end,
            Ok(opened) => {
                outcome.opened(opened.upstream_ttft);
                let stop = async {
                    tokio::select! {
                        biased;
                        _ = &mut cancelled => End::Cancelled,
                        _ = &mut shutting_down => End::Shutdown,
                    }
                };
                relay(&entry, opened.chunks, stop, &mut outcome).await
            }
        };
        let finish = match end {
            End::Done => Finish::Upstream("stop".to_owned()),
            End::Failed(error) => {
                let message = backend.sanitize(&error.to_string());
                entry.append(|buf, id| {
                    write_error(buf, id, error.code(), &message);
                    true
                });
                Finish::from_error(&error)
            }
            End::Cancelled => Finish::Cancelled(entry.cancel_reason()),
            End::Shutdown => {
                entry.append(|buf, id| {
                    write_error(
                        buf,
                        id,
                        "shutting_down",
                        "the gateway is shutting down; the answer was cut short",
                    );
                    true
                });
                Finish::Error("shutting_down")
            }
            End::TooLong => {
                entry.append(|buf, id| {
                    write_error(
                        buf,
                        id,
                        "stream_too_long",
                        "the answer passed the gateway's 16 MiB limit per stream",
                    );
                    true
                });
                Finish::Error("stream_too_long")
            }
        };
        if matches!(finish, Finish::Upstream(_)) {
            // A plain end keeps the finish_reason the upstream gave earlier.
            outcome.finish(finish);
        } else {
            outcome.finish = Some(finish);
        }
        let reason = outcome
            .finish
            .as_ref()
            .map_or("stop", Finish::reason)
            .to_owned();
        let usage = outcome.usage_or_estimate();
        entry.append(|buf, id| {
            write_stop(buf, id, &reason, usage, &entry.id);
            true
        });
        // The accounting ends (slot back, summary logged) before any reader can see the
        // stream end: a client that starts its next answer the moment this one ends must
        // not be refused for a slot the finished one still held.
        drop(outcome);
        entry.finish();
    }
}

/// Appends the generation's deltas to its log until it ends, one way or another.
async fn relay(
    entry: &Entry,
    mut stream: ChunkStream,
    stop: impl std::future::Future<Output = End>,
    outcome: &mut Outcome,
) -> End {
    let mut stop = std::pin::pin!(stop);
    loop {
        let item = tokio::select! {
            biased;
            end = &mut stop => return end,
            item = stream.next() => item,
        };
        let chunk = match item {
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => return End::Failed(error),
            None => return End::Done,
        };
        if let Some(usage) = chunk.usage() {
            outcome.usage = Some(usage);
        }
        if let Some(reason) = chunk.finish_reason() {
            outcome.finish(Finish::Upstream(reason.to_owned()));
        }
        if chunk.has_delta() {
            outcome.delta();
            entry.append(|buf, id| write_delta(buf, id, &chunk));
        }
        // A chunk without a delta (a role or usage chunk) is still an upstream event handled:
        // the first one, whatever it is, marks the gateway's overhead.
        outcome.relayed();
        if chunk.has_delta() && entry.bytes_held() > MAX_LOG_BYTES {
            return End::TooLong;
        }
    }
}
