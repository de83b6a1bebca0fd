//! The upstream's event stream, decoded: the one place that knows how SSE is parsed.
//!
//! Written here rather than taken from eventsource-stream, which allocated several times per
//! event (a `String` per line split off the buffer, the event name, the id twice) and reparsed
//! the whole pending line for every network read, quadratic on a long line such as a 200 KB
//! reasoning delta (its issue #11). This decoder scans each byte once and hands out every
//! event's data as a slice of the bytes received: no allocation per event in the common case
//! of one `data:` line. `benches/sse_parser.rs` compares the two in one run.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;

use super::UpstreamError;

/// One event's `data`, and the event as it came when it was just `data: {data}\n\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub data: Bytes,
    /// The upstream's own bytes of the event, when they were exactly `data: {data}\n\n`
    /// (nearly always): a relay in the same dialect passes them on without a copy.
    pub wire: Option<Bytes>,
}

/// Turns a response body into the `data` payloads of its events. Comment lines
/// (`: keep-alive`, `: OPENROUTER PROCESSING`), other fields (`event`, `id`, `retry`) and
/// events without data never come out. An event the body ends before its blank line is not
/// dispatched, as the SSE specification says.
pub fn data_events<S, E>(body: S) -> DataEvents<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display + Send,
{
    DataEvents {
        body: Box::pin(body),
        decoder: Decoder::default(),
        ended: false,
    }
}

/// The stream [`data_events`] returns. Written out rather than built with
/// `futures::stream::unfold`, which moves its whole state into a new future and back out
/// again for every event.
pub struct DataEvents<S> {
    body: Pin<Box<S>>,
    decoder: Decoder,
    /// The body is over (ended, or failed): what is still decoded comes out, then nothing.
    ended: bool,
}

impl<S, E> Stream for DataEvents<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    type Item = Result<Event, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.decoder.next_event() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if this.ended => return Poll::Ready(None),
                Ok(None) => {}
                // Nothing after an error: the stream is over.
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            }
            match ready!(this.body.as_mut().poll_next(cx)) {
                Some(Ok(bytes)) => this.decoder.push(bytes),
                Some(Err(e)) => {
                    let error = UpstreamError::Transport(e.to_string());
                    return Poll::Ready(Some(Err(this.fail(error))));
                }
                None => this.ended = true,
            }
        }
    }
}

impl<S> DataEvents<S> {
    /// Ends the stream after `error`: nothing buffered comes out any more.
    fn fail(&mut self, error: UpstreamError) -> UpstreamError {
        self.decoder = Decoder::default();
        self.ended = true;
        error
    }
}

/// An incremental SSE decoder over bytes (the format is UTF-8, but only `data` needs to be
/// valid text, and it is checked when its event is dispatched).
#[derive(Default)]
pub struct Decoder {
    buf: Pending,
    /// How much of `buf` is known to hold no line end, so each byte is scanned once.
    scanned: usize,
    /// The last line ended with CR: an LF that comes next is part of that line end.
    after_cr: bool,
    /// The byte-order mark a stream may start with has been dealt with.
    started: bool,
    /// The event being built: its data so far.
    data: Option<Bytes>,
}

impl Decoder {
    pub fn push(&mut self, bytes: Bytes) {
        self.buf.push(bytes);
    }

    /// The next complete event in what was pushed, if there is one.
    pub fn next_event(&mut self) -> Result<Option<Event>, UpstreamError> {
        loop {
            if !self.started {
                if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                    return Ok(None);
                }
                if self.buf.starts_with(b"\xEF\xBB\xBF") {
                    self.buf.advance(3);
                }
                self.started = true;
            }
            if self.after_cr && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.after_cr = false;
            }
            let Some(at) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                return Ok(None);
            };
            let end = self.scanned + at;
            // The usual event, one `data: ` line ended by LF and a blank line, is split off
            // whole rather than line by line: its bytes are then the frame a relay sends on.
            if self.data.is_none() && self.buf[end] == b'\n' && self.buf.starts_with(b"data: ") {
                match self.buf.get(end + 1) {
                    // The event goes out at its blank line only: waiting for the next byte
                    // delays nothing. The scan resumes at this line end.
                    None => {
                        self.scanned = end;
                        return Ok(None);
                    }
                    Some(b'\n') => {
                        let wire = self.buf.split_to(end + 2);
                        self.scanned = 0;
                        let data = checked(wire.slice(b"data: ".len()..end))?;
                        let wire = Some(wire);
                        return Ok(Some(Event { data, wire }));
                    }
                    Some(_) => {}
                }
            }
            self.after_cr = self.buf[end] == b'\r';
            let line = self.buf.split_to(end);
            self.buf.advance(1);
            self.scanned = 0;
            if let Some(data) = self.line(line)? {
                return Ok(Some(Event { data, wire: None }));
            }
        }
    }

    fn line(&mut self, line: Bytes) -> Result<Option<Bytes>, UpstreamError> {
        if line.is_empty() {
            return self.data.take().map(checked).transpose();
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (name, value) = match memchr::memchr(b':', &line) {
            Some(colon) => {
                let skip = usize::from(line.get(colon + 1) == Some(&b' '));
                (&line[..colon], line.slice(colon + 1 + skip..))
            }
            None => (&line[..], Bytes::new()),
        };
        if name == b"data" {
            self.data = Some(match self.data.take() {
                None => value,
                // Several data lines make one payload, joined by LF (rare: a copy is fine).
                Some(before) => {
                    let mut joined = BytesMut::with_capacity(before.len() + 1 + value.len());
                    joined.extend_from_slice(&before);
                    joined.extend_from_slice(b"\n");
                    joined.extend_from_slice(&value);
                    joined.freeze()
                }
            });
        }
        Ok(None)
    }
}

/// Bytes received and not yet decoded.
///
/// A read that finds nothing pending is kept as it came, so the events split off it are
/// slices of the body's own bytes: no copy and no allocation per read in the usual case,
/// where every read ends at an event's end. Bytes are copied into a buffer of the decoder's
/// own only while an event spans reads; that buffer grows like a `Vec` (amortised), so a
/// long event arriving in many small reads is still copied in linear time.
enum Pending {
    Received(Bytes),
    Joined(BytesMut),
}

impl Default for Pending {
    fn default() -> Self {
        Self::Received(Bytes::new())
    }
}

impl Pending {
    fn push(&mut self, bytes: Bytes) {
        if self.is_empty() {
            *self = Self::Received(bytes);
            return;
        }
        match self {
            Self::Received(rest) => {
                let mut joined = BytesMut::with_capacity(rest.len() + bytes.len());
                joined.extend_from_slice(rest);
                joined.extend_from_slice(&bytes);
                *self = Self::Joined(joined);
            }
            Self::Joined(joined) => joined.extend_from_slice(&bytes),
        }
    }

    fn split_to(&mut self, at: usize) -> Bytes {
        let taken = match self {
            Self::Received(bytes) => bytes.split_to(at),
            Self::Joined(joined) => joined.split_to(at).freeze(),
        };
        self.release_if_empty();
        taken
    }

    fn advance(&mut self, n: usize) {
        match self {
            Self::Received(bytes) => bytes.advance(n),
            Self::Joined(joined) => joined.advance(n),
        }
        self.release_if_empty();
    }

    /// An empty slice still holds its whole allocation (the upstream connection's read
    /// buffer, or the joined bytes): an idle stream should hold neither.
    fn release_if_empty(&mut self) {
        if self.is_empty() {
            *self = Self::default();
        }
    }
}

impl std::ops::Deref for Pending {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Received(bytes) => bytes,
            Self::Joined(joined) => joined,
        }
    }
}

/// `data` if it is UTF-8, as the SSE format must be.
fn checked(data: Bytes) -> Result<Bytes, UpstreamError> {
    // Nearly all chunks are ASCII (JSON escapes non-ASCII text or not); checking that is
    // several times cheaper than full UTF-8 validation.
    if is_ascii(&data) {
        return Ok(data);
    }
    match std::str::from_utf8(&data) {
        Ok(_) => Ok(data),
        Err(e) => Err(UpstreamError::InvalidEvent(format!(
            "the event stream is not UTF-8 ({e})"
        ))),
    }
}

/// `<[u8]>::is_ascii`, a block of 32 bytes at a time with one test per block. The standard
/// one tests every 8-byte word on its own, a branch each: ~240 instructions for a typical
/// 220-byte chunk, on every event the gateway relays.
pub(super) fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        let any = block.chunks_exact(8).fold(0, |any, word| {
            // `chunks_exact` yields 8 bytes each: the fallback never applies.
            any | u64::from_ne_bytes(word.try_into().unwrap_or([0xff; 8]))
        });
        if any & HIGH_BITS != 0 {
            return false;
        }
    }
    blocks.remainder().is_ascii()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::StreamExt;

    use super::*;

    fn events(pieces: &[&'static str]) -> Vec<String> {
        let body = futures::stream::iter(
            pieces
                .iter()
                .map(|p| Ok::<_, Infallible>(Bytes::from_static(p.as_bytes()))),
        );
        futures::executor::block_on(data_events(body).collect::<Vec<_>>())
            .into_iter()
            .map(|e| String::from_utf8(e.unwrap().data.to_vec()).unwrap())
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

    #[test]
    fn fields_comments_and_multi_line_data_follow_the_specification() {
        assert_eq!(
            events(&[": hi\nevent: x\nid: 7\nretry: 5\ndata:a\ndata:  b\ndata\n\n"]),
            ["a\n b\n"]
        );
        assert_eq!(events(&["data: a\n\n\n\n: c\n\ndata: b\n\n"]), ["a", "b"]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored_even_split() {
        assert_eq!(events(&["\u{feff}data: a\n\n"]), ["a"]);
        let bom = "\u{feff}".as_bytes();
        let body = futures::stream::iter([
            Ok::<_, Infallible>(Bytes::copy_from_slice(&bom[..1])),
            Ok(Bytes::copy_from_slice(&bom[1..])),
            Ok(Bytes::from_static(b"data: a\n\n")),
        ]);
        let got = futures::executor::block_on(data_events(body).collect::<Vec<_>>());
        assert_eq!(
            got.into_iter().map(|e| e.unwrap().data).collect::<Vec<_>>(),
            ["a"]
        );
    }

    #[test]
    fn a_long_line_in_many_pieces_is_one_event() {
        let line = format!("data: {}\n\n", "x".repeat(300_000));
        let pieces: Vec<_> = line
            .as_bytes()
            .chunks(1000)
            .map(Bytes::copy_from_slice)
            .collect();
        let body = futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
        let got = futures::executor::block_on(data_events(body).collect::<Vec<_>>());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().data.len(), 300_000);
    }

    /// Each event's wire bytes, as text, byte by byte or whole.
    fn wires(text: &'static str) -> [Vec<Option<String>>; 2] {
        let whole = [Bytes::from_static(text.as_bytes())];
        let bytes = text.as_bytes().chunks(1).map(Bytes::copy_from_slice);
        [whole.to_vec(), bytes.collect()].map(|pieces| {
            let body = futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
            futures::executor::block_on(data_events(body).collect::<Vec<_>>())
                .into_iter()
                .map(|e| {
                    let e = e.unwrap();
                    let wire = e.wire.map(|w| String::from_utf8(w.to_vec()).unwrap());
                    if let Some(wire) = &wire {
                        assert_eq!(wire.as_bytes(), [b"data: ", &e.data[..], b"\n\n"].concat());
                    }
                    wire
                })
                .collect()
        })
    }

    #[test]
    fn a_plain_data_event_comes_with_its_own_bytes() {
        let plain = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let expected = vec![
            Some("data: {\"a\":1}\n\n".to_owned()),
            Some("data: [DONE]\n\n".to_owned()),
        ];
        assert_eq!(wires(plain), [expected.clone(), expected]);
        // After other fields and comments, the data line alone is the event's frame.
        let after_fields = ": hi\n\nid: 1\ndata: x\n\n";
        let expected = vec![Some("data: x\n\n".to_owned())];
        assert_eq!(wires(after_fields), [expected.clone(), expected]);
    }

    #[test]
    fn other_events_come_without_wire_bytes() {
        for text in [
            "data:x\n\n",
            "data: x\r\n\r\n",
            "data: x\r\r",
            "data: x\ndata: y\n\n",
            "data: x\n: comment\n\n",
            "data: x\nid: 1\n\n",
        ] {
            assert_eq!(wires(text), [vec![None], vec![None]], "{text:?}");
        }
    }

    #[test]
    fn events_of_a_read_are_its_own_bytes_and_only_a_split_event_is_copied() {
        let read = Bytes::from_static(b"data: a\n\ndata: b\n\ndata: c");
        let mut decoder = Decoder::default();
        decoder.push(read.clone());
        for offset in [0, 9] {
            let event = decoder.next_event().unwrap().unwrap();
            assert_eq!(event.wire.unwrap().as_ptr(), read[offset..].as_ptr());
        }
        assert_eq!(decoder.next_event().unwrap(), None);
        // The rest of `c` comes in the next read: joined, then the reads after it are
        // taken as they come again.
        decoder.push(Bytes::from_static(b"d\n\n"));
        let event = decoder.next_event().unwrap().unwrap();
        assert_eq!(event.data, "cd");
        assert!(decoder.buf.is_empty());
        let next = Bytes::from_static(b"data: e\n\n");
        decoder.push(next.clone());
        let event = decoder.next_event().unwrap().unwrap();
        assert_eq!(event.wire.unwrap().as_ptr(), next.as_ptr());
        assert!(matches!(decoder.buf, Pending::Received(ref b) if b.is_empty()));
    }

    #[test]
    fn ascii_is_told_apart_at_every_length_and_position() {
        for len in 0..100 {
            let text = vec![b'a'; len];
            assert!(is_ascii(&text), "{len}");
            for at in 0..len {
                let mut other = text.clone();
                other[at] = 0x80;
                assert!(!is_ascii(&other), "{len} {at}");
            }
        }
    }

    #[test]
    fn invalid_utf8_in_data_is_named() {
        let body =
            futures::stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"data: \xff\n\n"))]);
        let got = futures::executor::block_on(data_events(body).collect::<Vec<_>>());
        assert!(matches!(&got[0], Err(UpstreamError::InvalidEvent(m)) if m.contains("UTF-8")));
        // Also when the event is taken whole, and when it is not.
        for text in [&b"data: \xff\n\n"[..], b"data: \xff\r\n\r\n"] {
            let mut decoder = Decoder::default();
            decoder.push(Bytes::from_static(text));
            assert!(matches!(
                decoder.next_event(),
                Err(UpstreamError::InvalidEvent(_))
            ));
        }
    }
}
