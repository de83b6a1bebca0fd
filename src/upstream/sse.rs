//! The one place that knows which crate parses the upstream's event stream
//! (eventsource-stream). Replacing the parser is a change to this file only.

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

use super::UpstreamError;

/// Turns a response body into the `data` payloads of its events. Comment lines
/// (`: keep-alive`, `: OPENROUTER PROCESSING`) and events without data never come out.
pub fn data_events<S, E>(body: S) -> impl Stream<Item = Result<Bytes, UpstreamError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display + Send,
{
    body.eventsource().map(|event| match event {
        Ok(event) => Ok(Bytes::from(event.data)),
        Err(EventStreamError::Transport(e)) => Err(UpstreamError::Transport(e.to_string())),
        Err(EventStreamError::Utf8(e)) => Err(UpstreamError::InvalidEvent(format!(
            "the event stream is not UTF-8 ({e})"
        ))),
        Err(EventStreamError::Parser(e)) => Err(UpstreamError::InvalidEvent(format!(
            "the event stream could not be parsed ({e:?})"
        ))),
    })
}
