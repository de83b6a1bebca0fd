//! One streamed chunk: the upstream's JSON kept byte for byte, plus what the gateway needs
//! from it, found by one scan that only records where things are (see `scan.rs` for why not
//! serde_json).

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{Event, UpstreamError};
use crate::scan::{Cursor, Scan, ScanError, decode_string};

/// Token counts, as upstreams report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// A parsed `chat.completion.chunk`.
///
/// Kept within 128 bytes: a chunk is moved by value through five stream layers on its way
/// to the client, and a larger one took a `memcpy` call at each (~8 per event).
#[derive(Debug, Clone)]
pub struct Chunk {
    raw: Bytes,
    /// The upstream's event, `data: {raw}\n\n`, as it came, when it came so.
    pub(super) wire: Option<Bytes>,
    content: Option<Span>,
    reasoning: Option<Span>,
    tool_calls: Option<Span>,
    /// Only a stream's last chunks have one.
    ending: Option<Box<Ending>>,
    /// `choices` is missing or `[]`: a usage-only chunk.
    pub choices_empty: bool,
}

/// What a chunk carries besides its delta, nearly always only at the end of a stream.
#[derive(Debug, Clone)]
struct Ending {
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

/// Where a value lies in a chunk's text: a `Range<usize>` in half the bytes. Chunks of
/// 4 GiB or more are refused, so every offset fits.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(range: Range<usize>) -> Self {
        let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
        Self {
            start: offset(range.start),
            end: offset(range.end),
        }
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// What one scan of a chunk found, as ranges into its text.
#[derive(Default, Clone)]
struct Found {
    choices: usize,
    /// `delta` of the first choice with index 0.
    first: Option<Delta>,
    /// The first choice's `finish_reason` that is not null.
    finish_reason: Option<Range<usize>>,
    usage: Option<Usage>,
    error: Option<Range<usize>>,
    object: Option<Range<usize>>,
    message: Option<Range<usize>>,
}

#[derive(Default, Clone)]
struct Delta {
    content: Option<Range<usize>>,
    reasoning_content: Option<Range<usize>>,
    reasoning: Option<Range<usize>>,
    tool_calls: Option<Range<usize>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Rejects a key seen before in the same object, as serde's derived structs do; `bit` names it.
fn first_time(cursor: &mut Cursor<'_>, seen: &mut u8, bit: u8) -> Scan<()> {
    if *seen & bit != 0 {
        return Err(cursor.error_here("duplicate field"));
    }
    *seen |= bit;
    Ok(())
}

/// `null` or a value of the kind `take` reads.
fn nullable<'t>(
    cursor: &mut Cursor<'t>,
    take: impl FnOnce(&mut Cursor<'t>) -> Scan<Range<usize>>,
) -> Scan<Option<Range<usize>>> {
    if cursor.null()? {
        Ok(None)
    } else {
        take(cursor).map(Some)
    }
}

/// A place between two top-level members where a later chunk's scan can start: right after
/// the `,`, with what the members before it set.
#[derive(Clone)]
struct Mark {
    at: usize,
    seen: u8,
    object: Option<Range<usize>>,
}

/// Scans a chunk, from `resume` if given (see [`ChunkReader`]). With `marks`, notes a
/// [`Mark`] after each top-level member up to the first that sets more than `object`.
fn scan_chunk(
    cursor: &mut Cursor<'_>,
    resume: Option<&Mark>,
    mut marks: Option<&mut Vec<Mark>>,
) -> Scan<Found> {
    let mut found = Found::default();
    let mut seen = 0;
    match resume {
        Some(mark) => {
            cursor.resume_object(mark.at)?;
            seen = mark.seen;
            found.object.clone_from(&mark.object);
        }
        None => {
            if !cursor.open_object()? {
                cursor.end()?;
                return Ok(found);
            }
        }
    }
    loop {
        let key = cursor.key()?;
        match &*key {
            b"choices" => {
                first_time(cursor, &mut seen, 1)?;
                if !cursor.null()? {
                    cursor.array(|cursor| scan_choice(cursor, &mut found))?;
                }
                marks = None;
            }
            b"usage" => {
                first_time(cursor, &mut seen, 2)?;
                found.usage = if cursor.null()? {
                    None
                } else {
                    Some(scan_usage(cursor)?)
                };
                marks = None;
            }
            b"error" => {
                first_time(cursor, &mut seen, 4)?;
                found.error = nullable(cursor, Cursor::value)?;
                marks = None;
            }
            b"object" => {
                first_time(cursor, &mut seen, 8)?;
                found.object = nullable(cursor, Cursor::string)?;
            }
            b"message" => {
                first_time(cursor, &mut seen, 16)?;
                found.message = nullable(cursor, Cursor::string)?;
                marks = None;
            }
            _ => {
                cursor.value()?;
            }
        }
        if !cursor.after_member()? {
            break;
        }
        if let Some(marks) = marks.as_deref_mut() {
            marks.push(Mark {
                at: cursor.position(),
                seen,
                object: found.object.clone(),
            });
        }
    }
    cursor.end()?;
    Ok(found)
}

fn scan_choice(cursor: &mut Cursor<'_>, found: &mut Found) -> Scan<()> {
    let mut index = 0;
    let mut delta = None;
    let mut finish_reason = None;
    let mut seen = 0;
    cursor.object(|cursor, key| {
        match &*key {
            b"index" => {
                first_time(cursor, &mut seen, 1)?;
                let at = cursor.error_here("expected a number from 0 to 4294967295");
                index = u32::try_from(cursor.u64()?).map_err(|_| at)?;
            }
            b"delta" => {
                first_time(cursor, &mut seen, 2)?;
                delta = if cursor.null()? {
                    None
                } else {
                    Some(scan_delta(cursor)?)
                };
            }
            b"finish_reason" => {
                first_time(cursor, &mut seen, 4)?;
                finish_reason = nullable(cursor, Cursor::string)?;
            }
            _ => {
                cursor.value()?;
            }
        }
        Ok(())
    })?;
    found.choices += 1;
    if found.finish_reason.is_none() {
        found.finish_reason = finish_reason;
    }
    if index == 0 && found.first.is_none() {
        found.first = Some(delta.unwrap_or_default());
    }
    Ok(())
}

fn scan_delta(cursor: &mut Cursor<'_>) -> Scan<Delta> {
    let mut delta = Delta::default();
    let mut seen = 0;
    cursor.object(|cursor, key| {
        let (bit, slot) = match &*key {
            b"content" => (1, &mut delta.content),
            b"reasoning_content" => (2, &mut delta.reasoning_content),
            b"reasoning" => (4, &mut delta.reasoning),
            b"tool_calls" => (8, &mut delta.tool_calls),
            _ => return cursor.value().map(drop),
        };
        first_time(cursor, &mut seen, bit)?;
        *slot = nullable(cursor, Cursor::value)?;
        Ok(())
    })?;
    Ok(delta)
}

fn scan_usage(cursor: &mut Cursor<'_>) -> Scan<Usage> {
    let mut usage = Usage::default();
    let mut seen = 0;
    cursor.object(|cursor, key| {
        let (bit, slot) = match &*key {
            b"prompt_tokens" => (1, &mut usage.prompt_tokens),
            b"completion_tokens" => (2, &mut usage.completion_tokens),
            b"total_tokens" => (4, &mut usage.total_tokens),
            _ => return cursor.value().map(drop),
        };
        first_time(cursor, &mut seen, bit)?;
        *slot = cursor.u64()?;
        Ok(())
    })?;
    Ok(usage)
}

impl Chunk {
    /// Parses one `data:` payload. An error the upstream reports in-band becomes `Err`.
    pub fn parse(raw: Bytes) -> Result<Chunk, UpstreamError> {
        Self::parse_with(raw, None, Text::Unchecked)
    }

    fn parse_with(
        raw: Bytes,
        reader: Option<&mut ChunkReader>,
        text: Text,
    ) -> Result<Chunk, UpstreamError> {
        let invalid = |e: ScanError| UpstreamError::InvalidEvent(format!("not a JSON chunk ({e})"));
        if u32::try_from(raw.len()).is_err() {
            return Err(UpstreamError::InvalidEvent(
                "a chunk of 4 GiB or more".to_owned(),
            ));
        }
        // Nearly every chunk is ASCII; checking that is several times cheaper than UTF-8.
        if text == Text::Unchecked && !super::sse::is_ascii(&raw) {
            std::str::from_utf8(&raw).map_err(|e| {
                invalid(ScanError {
                    at: e.valid_up_to(),
                    what: "invalid UTF-8",
                })
            })?;
        }
        let mut cursor = Cursor::new(&raw);
        if cursor.peek() != Some(b'{') {
            return Err(invalid(cursor.error_here("expected a JSON object")));
        }
        let found = match reader {
            None => scan_chunk(&mut cursor, None, None),
            Some(reader) => reader.scan(&raw, &mut cursor),
        }
        .map_err(invalid)?;
        if let Some(error) = found.error {
            let error = &raw[error];
            let message = serde_json::from_slice::<ErrorBody<'_>>(error)
                .ok()
                .and_then(|b| b.message.map(Cow::into_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(error).into_owned());
            return Err(UpstreamError::Reported(message));
        }
        // Every chunk says `"object":"chat.completion.chunk"`: compare bytes, decode only escapes.
        let is_error = |o: &Range<usize>| match &raw[o.clone()] {
            b"\"error\"" => true,
            text => text.contains(&b'\\') && decode_string(text) == "error",
        };
        if found.object.as_ref().is_some_and(is_error) {
            let message = found.message.map(|m| decode_string(&raw[m]).into_owned());
            return Err(UpstreamError::Reported(
                message.unwrap_or_else(|| "unspecified error".to_owned()),
            ));
        }
        // An empty string, `null` or `[]` carries nothing a reader would see.
        let span = |v: Option<Range<usize>>| {
            v.filter(|v| !matches!(&raw[v.clone()], b"\"\"" | b"null" | b"[]"))
                .map(Span::of)
        };
        let delta = found.first.unwrap_or_default();
        let finish_reason = found
            .finish_reason
            .map(|r| decode_string(&raw[r]).into_owned());
        let ending = (finish_reason.is_some() || found.usage.is_some()).then(|| {
            Box::new(Ending {
                finish_reason,
                usage: found.usage,
            })
        });
        Ok(Chunk {
            content: span(delta.content),
            reasoning: span(delta.reasoning_content.or(delta.reasoning)),
            tool_calls: span(delta.tool_calls),
            ending,
            choices_empty: found.choices == 0,
            raw,
            wire: None,
        })
    }

    /// The chunk as an event, `data: {raw}\n\n`: the upstream's own bytes when it sent it
    /// so, as nearly all do, else a copy.
    pub fn event(&self) -> Bytes {
        if let Some(wire) = &self.wire {
            return wire.clone();
        }
        framed(&self.raw)
    }

    /// The chunk's JSON exactly as the upstream sent it.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The first choice's `delta.content` as its JSON string literal (escapes kept).
    pub fn content_json(&self) -> Option<&[u8]> {
        self.content.map(|s| &self.raw[s.range()])
    }

    /// `delta.reasoning_content` or `delta.reasoning`, as a JSON string literal.
    pub fn reasoning_json(&self) -> Option<&[u8]> {
        self.reasoning.map(|s| &self.raw[s.range()])
    }

    /// `delta.tool_calls` as the upstream sent it.
    pub fn tool_calls_json(&self) -> Option<&[u8]> {
        self.tool_calls.map(|s| &self.raw[s.range()])
    }

    /// The first choice's `finish_reason` that is not null, decoded.
    pub fn finish_reason(&self) -> Option<&str> {
        self.ending.as_ref()?.finish_reason.as_deref()
    }

    /// The chunk's `usage`, when it has one that is not null.
    pub fn usage(&self) -> Option<Usage> {
        self.ending.as_ref()?.usage
    }

    /// Carries anything a reader would see (content, reasoning or a tool call).
    pub fn has_delta(&self) -> bool {
        self.content.is_some() || self.reasoning.is_some() || self.tool_calls.is_some()
    }

    /// This chunk with its `usage` field removed, for a client that did not ask for usage
    /// (rare: only upstreams that put usage on a content or finish chunk need it).
    pub fn without_usage(&self) -> Bytes {
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&self.raw) {
            Ok(mut map) => {
                map.remove("usage");
                serde_json::to_vec(&map).map_or_else(|_| self.raw.clone(), Bytes::from)
            }
            Err(_) => self.raw.clone(),
        }
    }
}

/// Whether a chunk's bytes are yet to be checked for UTF-8.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    Unchecked,
    /// By the SSE decoder ([`super::sse::Decoder`]).
    Checked,
}

/// `data: {json}\n\n`. A chunk the upstream sent in several `data` lines has line feeds
/// in it (the decoder joins the lines with them, whitespace to JSON): each line then gets a
/// `data: ` of its own, or a client would read the rest as other fields.
pub fn framed(json: &[u8]) -> Bytes {
    let lines = json.split(|&b| b == b'\n');
    let mut frame = BytesMut::with_capacity(json.len() + 8);
    for line in lines {
        frame.put_slice(b"data: ");
        frame.put_slice(line);
        frame.put_slice(b"\n");
    }
    frame.put_slice(b"\n");
    frame.freeze()
}

/// Parses the chunks of one stream, scanning only what differs from the chunk before.
///
/// Upstreams repeat the same members ahead of `choices` in every chunk of an answer (`id`,
/// `object`, `created`, `model`, `system_fingerprint`: over half of a small chunk's bytes).
/// The reader keeps the bytes of those members as last scanned, and where the next chunk
/// starts with the same bytes it resumes the scan after them, in the state the last scan had
/// there: the same bytes in the same state scan the same way, so the verdict, every range
/// and every error is the one a whole scan gives (tests/fuzz/chunk.rs checks it).
///
/// Most upstreams (vLLM, llama.cpp, Ollama, DeepSeek …) go further: all their content chunks
/// are one text with only the `delta.content` string changing. The reader keeps the last
/// chunk's [`Shape`], and a chunk that is its bytes with another string in that place is not
/// scanned at all beyond that string.
#[derive(Default)]
pub struct ChunkReader {
    /// The last chunk's bytes up to its last mark.
    prefix: Vec<u8>,
    marks: Vec<Mark>,
    /// The last scanned chunk around its content string, when it had one. Boxed, and not
    /// taken from a stream's first chunk (its `role` sets it apart from the rest anyway):
    /// a stream held open after its first event then carries none.
    shape: Option<Box<Shape>>,
    /// A chunk has been scanned.
    started: bool,
    /// Chunks in a row that did not have the shape of the one before. An upstream that
    /// varies more than the content (OpenAI pads each chunk with a random `obfuscation`)
    /// never has, and after [`GIVE_UP`] misses its chunks are no longer compared and copied.
    misses: u8,
}

/// See [`ChunkReader::misses`]. A stream's first and last chunks differ from the rest
/// (`role`, `finish_reason`), so a reader must outlast two misses in a row.
const GIVE_UP: u8 = 4;

/// A chunk's bytes before and after its `delta.content` string, and what its scan found.
///
/// A text with the same bytes before and after, and any string literal between, scans the
/// same way: the bytes before leave the scan in the same state, a string literal takes it
/// to the state the other one did, and the same bytes follow. So its scan finds the same,
/// with the content in the new place, as long as nothing else it found lies after that
/// place (those ranges would move); [`ChunkReader::note_shape`] keeps only such shapes.
struct Shape {
    before: Vec<u8>,
    after: Vec<u8>,
    found: Found,
}

impl ChunkReader {
    /// Parses the next chunk of the stream, as [`Chunk::parse`] would.
    pub fn parse(&mut self, raw: Bytes) -> Result<Chunk, UpstreamError> {
        Chunk::parse_with(raw, Some(self), Text::Unchecked)
    }

    /// Parses the chunk an event of the upstream's stream carries. The SSE decoder has
    /// checked that its data is UTF-8, so that is not checked again (it was ~240
    /// instructions a chunk).
    pub fn parse_event(&mut self, event: Event) -> Result<Chunk, UpstreamError> {
        let mut chunk = Chunk::parse_with(event.data, Some(self), Text::Checked)?;
        chunk.wire = event.wire;
        Ok(chunk)
    }

    fn scan(&mut self, raw: &[u8], cursor: &mut Cursor<'_>) -> Scan<Found> {
        if self.shape.is_some() {
            if let Some(found) = self.same_shape(raw) {
                self.misses = 0;
                return Ok(found);
            }
            self.misses = self.misses.saturating_add(1);
        }
        let same = common_prefix(&self.prefix, raw);
        let kept = self.marks.iter().take_while(|m| m.at <= same).count();
        self.marks.truncate(kept);
        let resume = self.marks.last().cloned();
        let result = scan_chunk(cursor, resume.as_ref(), Some(&mut self.marks));
        let first = !std::mem::replace(&mut self.started, true);
        match &result {
            Ok(found) if !first && self.misses < GIVE_UP => self.note_shape(raw, found),
            Ok(_) => self.shape = None,
            Err(_) => {
                // A failed scan may have left marks past the error; the stream ends here anyway.
                self.marks.clear();
                self.shape = None;
            }
        }
        // Keep `prefix` equal to this chunk's bytes up to the last mark: a mark at or before
        // `same` (never past the old prefix) lies in bytes the two chunks share.
        let end = self.marks.last().map_or(0, |m| m.at);
        if end <= same {
            self.prefix.truncate(end);
        } else {
            self.prefix.clear();
            self.prefix.extend_from_slice(&raw[..end]);
        }
        result
    }

    /// What the scan of `raw` finds, if `raw` is the last shape with another content string.
    /// Marks and prefix stay as they are: they lie in the bytes before the content.
    fn same_shape(&self, raw: &[u8]) -> Option<Found> {
        let shape = self.shape.as_ref()?;
        let start = shape.before.len();
        let end = raw.len().checked_sub(shape.after.len())?;
        if end <= start || !raw.ends_with(&shape.after) || !raw.starts_with(&shape.before) {
            return None;
        }
        let content = Cursor::starting_at(raw, start).string().ok()?;
        if content != (start..end) {
            return None;
        }
        let mut found = shape.found.clone();
        found.first.as_mut()?.content = Some(content);
        Some(found)
    }

    /// Keeps `raw`'s shape for the next chunk, if it has a content string and nothing else
    /// found lies after it.
    fn note_shape(&mut self, raw: &[u8], found: &Found) {
        let Some(delta) = &found.first else {
            self.shape = None;
            return;
        };
        let Some(content) = delta.content.clone().filter(|c| raw[c.start] == b'"') else {
            self.shape = None;
            return;
        };
        let before_content =
            |range: &Option<Range<usize>>| range.as_ref().is_none_or(|r| r.end <= content.start);
        let others = [
            &delta.reasoning_content,
            &delta.reasoning,
            &delta.tool_calls,
            &found.finish_reason,
            &found.error,
            &found.object,
            &found.message,
        ];
        if !others.into_iter().all(before_content) {
            self.shape = None;
            return;
        }
        // The vectors are reused from shape to shape.
        let shape = self.shape.get_or_insert_with(|| {
            Box::new(Shape {
                before: Vec::new(),
                after: Vec::new(),
                found: Found::default(),
            })
        });
        shape.before.clear();
        shape.before.extend_from_slice(&raw[..content.start]);
        shape.after.clear();
        shape.after.extend_from_slice(&raw[content.end..]);
        shape.found.clone_from(found);
    }
}

/// How many bytes `a` and `b` share from the start; 16 at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let blocks = a.chunks_exact(16).zip(b.chunks_exact(16));
    let mut same = 0;
    for (x, y) in blocks {
        // `chunks_exact` yields 16 bytes each: the fallbacks never apply.
        let x = u128::from_le_bytes(x.try_into().unwrap_or([0; 16]));
        let y = u128::from_le_bytes(y.try_into().unwrap_or([1; 16]));
        if x != y {
            return same + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        same += 16;
    }
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_of_several_data_lines_is_framed_line_by_line() {
        assert_eq!(framed(b"{\"a\":1}"), "data: {\"a\":1}\n\n");
        assert_eq!(framed(b"{\"a\"\n:1}"), "data: {\"a\"\ndata: :1}\n\n");
    }

    fn parse(s: &str) -> Result<Chunk, UpstreamError> {
        Chunk::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn content_is_kept_as_its_escaped_json_literal() {
        let c = parse(r#"{"choices":[{"index":0,"delta":{"content":"a \"q\"\n"}}]}"#).unwrap();
        assert_eq!(c.content_json().unwrap(), br#""a \"q\"\n""#);
        assert!(c.has_delta());
        assert!(c.finish_reason().is_none());
    }

    #[test]
    fn reasoning_comes_from_either_field_name() {
        let a = parse(r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#).unwrap();
        let b = parse(r#"{"choices":[{"delta":{"reasoning":"hm"}}]}"#).unwrap();
        assert_eq!(a.reasoning_json().unwrap(), b"\"hm\"");
        assert_eq!(b.reasoning_json().unwrap(), b"\"hm\"");
    }

    #[test]
    fn usage_is_found_in_every_placement() {
        for s in [
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        ] {
            let c = parse(s).unwrap();
            assert_eq!(c.usage().unwrap().total_tokens, 7, "{s}");
            assert!(!c.has_delta());
        }
    }

    #[test]
    fn empty_and_null_fields_are_no_delta() {
        let c = parse(r#"{"choices":[{"delta":{"role":"assistant","content":"","tool_calls":null}}],"usage":null}"#).unwrap();
        assert!(!c.has_delta());
        assert!(c.usage().is_none());
    }

    #[test]
    fn errors_in_both_shapes_are_reported() {
        let openai = parse(r#"{"error":{"message":"overloaded","type":"server_error"}}"#);
        let vllm = parse(r#"{"object":"error","message":"bad things","code":500}"#);
        assert!(matches!(openai, Err(UpstreamError::Reported(m)) if m == "overloaded"));
        assert!(matches!(vllm, Err(UpstreamError::Reported(m)) if m == "bad things"));
    }

    #[test]
    fn garbage_is_an_invalid_event() {
        assert!(matches!(
            parse("{not json"),
            Err(UpstreamError::InvalidEvent(_))
        ));
        assert!(matches!(
            parse("[1,2]"),
            Err(UpstreamError::InvalidEvent(_))
        ));
    }

    #[test]
    fn a_repeated_field_is_invalid_as_serde_would_have_it() {
        for s in [
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"usage":{"total_tokens":1,"total_tokens":2}}"#,
        ] {
            assert!(
                matches!(parse(s), Err(UpstreamError::InvalidEvent(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn escaped_keys_and_whitespace_are_read_like_plain_ones() {
        let c = parse(
            "{ \"choices\" : [ { \"d\\u0065lta\" : { \"content\" : \"hi\" } ,\n\"finish_reason\":\"st\\u006fp\"} ] }",
        )
        .unwrap();
        assert_eq!(c.content_json().unwrap(), br#""hi""#);
        assert_eq!(c.finish_reason(), Some("stop"));
    }

    #[test]
    fn wrong_types_in_read_fields_are_invalid() {
        for s in [
            r#"{"choices":{}}"#,
            r#"{"choices":[{"index":-1}]}"#,
            r#"{"choices":[{"delta":"x"}]}"#,
            r#"{"choices":[{"finish_reason":1}]}"#,
            r#"{"usage":{"total_tokens":1.5}}"#,
            r#"{"object":5}"#,
            r#"{"choices":[]} x"#,
        ] {
            assert!(
                matches!(parse(s), Err(UpstreamError::InvalidEvent(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn a_chunk_moves_without_a_memcpy_call() {
        // 128 bytes is the most x86-64 (SSE2) copies inline; see `Chunk`.
        assert!(std::mem::size_of::<Chunk>() <= 128);
        assert!(std::mem::size_of::<Option<Result<Chunk, UpstreamError>>>() <= 128);
    }

    #[test]
    fn ending_fields_are_read_from_any_chunk() {
        let c = parse(r#"{"choices":[{"delta":{"content":"a"}}]}"#).unwrap();
        assert!(c.ending.is_none());
        assert_eq!((c.finish_reason(), c.usage()), (None, None));
        let c = parse(r#"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"completion_tokens":2}}"#).unwrap();
        assert_eq!(c.finish_reason(), Some("length"));
        assert_eq!(c.usage().map(|u| u.completion_tokens), Some(2));
    }

    #[test]
    fn usage_can_be_stripped_from_a_finish_chunk() {
        let c = parse(r#"{"id":"x","choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":1}}"#).unwrap();
        let stripped = c.without_usage();
        assert!(!String::from_utf8_lossy(&stripped).contains("usage"));
        assert!(String::from_utf8_lossy(&stripped).contains("\"finish_reason\":\"stop\""));
    }

    /// What a reader makes of `text`, as comparable text.
    fn read(reader: &mut ChunkReader, text: &str) -> String {
        match reader.parse(Bytes::copy_from_slice(text.as_bytes())) {
            Ok(c) => format!(
                "content {:?} finish {:?} usage {:?}",
                c.content_json().map(String::from_utf8_lossy),
                c.finish_reason(),
                c.usage()
            ),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_reader_reuses_a_shape_only_for_exactly_one_string_in_the_content_place() {
        let chunk = |content: &str| {
            format!(
                r#"{{"id":"c1","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":null}}],"usage":null}}"#
            )
        };
        for content in [
            r#""x""#,
            r#""a \"q\" \\ \u00e9""#,
            r#""""#,
            r#""x","role":"assistant""#,
            r#""x",}"#,
            r#""x" "y""#,
            r#""unterminated"#,
            "\"a\u{1}b\"",
            "5",
            "null",
            r#"{"a":"b"}"#,
            r#"  "spaced" "#,
        ] {
            let mut reader = ChunkReader::default();
            read(&mut reader, &chunk(r#""first""#));
            assert!(
                reader.shape.is_none(),
                "a stream's first chunk leaves no shape"
            );
            read(&mut reader, &chunk(r#""abc""#));
            assert!(reader.shape.is_some(), "a later one does");
            let text = chunk(content);
            let alone = read(&mut ChunkReader::default(), &text);
            assert_eq!(read(&mut reader, &text), alone, "{text}");
        }
    }

    #[test]
    fn a_reader_stops_comparing_shapes_when_chunks_vary_beyond_their_content() {
        let chunk = |content: &str, tail: &str| {
            format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"{content}"}}}}]{tail}}}"#)
        };
        let mut reader = ChunkReader::default();
        // A first and a last chunk unlike the rest leave the shape of the others in use.
        read(&mut reader, &chunk("", r#","role":"assistant""#));
        for i in 0..10 {
            read(&mut reader, &chunk(&i.to_string(), ""));
        }
        read(&mut reader, &chunk("", r#","x":1"#));
        assert!(reader.shape.is_some());
        // No shape from the first chunk, none to compare with at the second, then misses.
        let mut padded = ChunkReader::default();
        for i in 0..GIVE_UP + 2 {
            let tail = format!(r#","obfuscation":"{}""#, "x".repeat(usize::from(i)));
            read(&mut padded, &chunk("a", &tail));
        }
        assert!(padded.shape.is_none());
    }

    #[test]
    fn no_shape_is_kept_when_a_found_field_follows_the_content() {
        let plain = r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#;
        for text in [
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":5}}]}"#,
        ] {
            let mut reader = ChunkReader::default();
            read(&mut reader, plain);
            read(&mut reader, plain);
            assert!(reader.shape.is_some());
            read(&mut reader, text);
            assert!(reader.shape.is_none(), "{text}");
        }
    }
}
