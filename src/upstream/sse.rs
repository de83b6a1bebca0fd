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
    settle_final_cr(body)
        .eventsource()
        .map(|event| match event {
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

/// eventsource-stream cannot tell a CR at the end of what it has from the first half of a
/// CRLF, so it waits for the next byte; when the body ends there, the last event is lost.
/// SSE allows bare CR line ends, so a stream ending in `\r\r` would look truncated. One LF
/// after a final CR settles it (as a CRLF) and adds no line.
fn settle_final_cr<S, E>(body: S) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Send,
{
    let state = (Box::pin(body), false, false);
    futures::stream::unfold(state, |(mut body, ends_in_cr, over)| async move {
        if over {
            return None;
        }
        match body.next().await {
            Some(Ok(bytes)) => {
                let cr = bytes.last().map_or(ends_in_cr, |&b| b == b'\r');
                Some((Ok(bytes), (body, cr, false)))
            }
            Some(Err(e)) => Some((Err(e), (body, ends_in_cr, false))),
            None if ends_in_cr => Some((Ok(Bytes::from_static(b"\n")), (body, false, true))),
            None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn events(pieces: &[&'static str]) -> Vec<String> {
        let body = futures::stream::iter(
            pieces
                .iter()
                .map(|p| Ok::<_, Infallible>(Bytes::from_static(p.as_bytes()))),
        );
        futures::executor::block_on(data_events(body).collect::<Vec<_>>())
            .into_iter()
            .map(|e| String::from_utf8(e.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn an_event_that_ends_the_body_with_a_bare_cr_is_not_lost() {
        assert_eq!(events(&["data: a\r\rdata: b\r\r"]), ["a", "b"]);
        assert_eq!(events(&["data: a\r", "\r"]), ["a"]);
    }

    #[test]
    fn a_crlf_split_across_reads_is_one_line_end() {
        assert_eq!(events(&["data: a\r", "\n\r", "\n"]), ["a"]);
        assert_eq!(events(&["data: a\r\n\r\n"]), ["a"]);
    }

    #[test]
    fn an_event_without_its_blank_line_at_the_end_is_dropped() {
        assert_eq!(events(&["data: a\n\ndata: b\n"]), ["a"]);
    }
}
