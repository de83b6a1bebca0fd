//! The upstream side: an OpenAI-compatible streaming API reached over HTTP.

mod chunk;
mod client;
mod error;
mod h1;
mod response;
mod sanitize;
mod sse;

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;

pub use chunk::{Chunk, ChunkReader, Usage, framed};
pub use client::{ClientBuildError, UpstreamClient};
pub use error::UpstreamError;
pub use sanitize::sanitize;
pub use sse::{Event, data_events};

/// Turns `data` payloads into chunks. `[DONE]` ends the stream cleanly; so does the end of
/// the body after a `finish_reason`. A body that ends without either has failed, and says so.
/// After an error nothing more is read.
pub fn chunks<S>(data: S) -> Chunks<S>
where
    S: Stream<Item = Result<Event, UpstreamError>> + Send,
{
    Chunks {
        data: Box::pin(data),
        reader: ChunkReader::default(),
        finished: false,
        over: false,
    }
}

/// The stream [`chunks`] returns. Written out rather than built with
/// `futures::stream::unfold`, which moves its whole state (the reader's marks and prefix
/// included) into a new future and back out again for every chunk.
pub struct Chunks<S> {
    data: Pin<Box<S>>,
    reader: ChunkReader,
    /// A chunk with a `finish_reason` went by: the body may now end without `[DONE]`.
    finished: bool,
    over: bool,
}

impl<S> Stream for Chunks<S>
where
    S: Stream<Item = Result<Event, UpstreamError>>,
{
    type Item = Result<Chunk, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.over {
            return Poll::Ready(None);
        }
        let item = match ready!(this.data.as_mut().poll_next(cx)) {
            Some(Ok(event)) if event.data.as_ref() == b"[DONE]" => None,
            Some(Ok(event)) => Some(this.reader.parse_event(event)),
            Some(Err(e)) => Some(Err(e)),
            None if this.finished => None,
            None => Some(Err(UpstreamError::Truncated)),
        };
        match &item {
            Some(Ok(chunk)) => this.finished |= chunk.finish_reason().is_some(),
            Some(Err(_)) | None => this.over = true,
        }
        Poll::Ready(item)
    }
}
