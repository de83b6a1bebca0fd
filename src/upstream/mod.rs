//! The upstream side: an OpenAI-compatible streaming API reached over HTTP.

mod chunk;
mod client;
mod error;
mod h1;
mod response;
mod sanitize;
mod scan;
mod sse;

use bytes::Bytes;
use futures::{Stream, StreamExt};

pub use chunk::{Chunk, ChunkReader, Usage};
pub use client::{ClientBuildError, UpstreamClient};
pub use error::UpstreamError;
pub use sanitize::sanitize;
pub use sse::data_events;

/// Turns `data` payloads into chunks. `[DONE]` ends the stream cleanly; so does the end of
/// the body after a `finish_reason`. A body that ends without either has failed, and says so.
/// After an error nothing more is read.
pub fn chunks<S>(data: S) -> impl Stream<Item = Result<Chunk, UpstreamError>> + Send
where
    S: Stream<Item = Result<Bytes, UpstreamError>> + Send,
{
    struct State<S> {
        data: std::pin::Pin<Box<S>>,
        reader: ChunkReader,
        finished: bool,
        over: bool,
    }
    let state = State {
        data: Box::pin(data),
        reader: ChunkReader::default(),
        finished: false,
        over: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.over {
            return None;
        }
        let item = match state.data.next().await {
            Some(Ok(data)) if data.as_ref() == b"[DONE]" => return None,
            Some(Ok(data)) => state.reader.parse(data),
            Some(Err(e)) => Err(e),
            None if state.finished => return None,
            None => Err(UpstreamError::Truncated),
        };
        match &item {
            Ok(chunk) => state.finished |= chunk.finish_reason.is_some(),
            Err(_) => state.over = true,
        }
        Some((item, state))
    })
}
