//! An incremental Server-Sent Events splitter, cheap enough to sit in a load generator.
//!
//! Bytes go in as they arrive from the socket; complete events come out. Lines end with `\n` or
//! `\r\n` (a lone `\r` is not treated as a line end). Comment lines (`: ping`) are reported
//! separately and never form an event. Only the fields a benchmark needs are kept: the event
//! name and the data (multi-line data joined with `\n`).

/// One dispatched event. `data` is empty when the event had no `data:` line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<Vec<u8>>,
    pub data: Vec<u8>,
    pub has_data: bool,
    pub has_id: bool,
}

/// What a call to [`SseParser::feed`] produced.
#[derive(Debug, Default)]
pub struct FeedResult {
    pub comments: usize,
}

/// Longest line accepted before the parser gives up (a broken stream, not a real event).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: Event,
}

/// Error for a line longer than [`MAX_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held back waiting for the end of their line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; calls `on_event` for each complete event, in order.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(&Event),
    ) -> Result<FeedResult, LineTooLong> {
        let mut res = FeedResult::default();
        // Fast path: nothing buffered, parse straight from `chunk` and keep only the tail.
        let owned;
        let input: &[u8] = if self.buf.is_empty() {
            chunk
        } else {
            self.buf.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.buf);
            &owned
        };
        let mut pos = 0;
        while let Some(nl) = memchr_nl(&input[pos..]) {
            let mut line = &input[pos..pos + nl];
            pos += nl + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                if self.cur.has_data || self.cur.name.is_some() {
                    on_event(&self.cur);
                }
                self.cur.name = None;
                self.cur.data.clear();
                self.cur.has_data = false;
                self.cur.has_id = false;
                continue;
            }
            if line[0] == b':' {
                res.comments += 1;
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"data" => {
                    if self.cur.has_data {
                        self.cur.data.push(b'\n');
                    }
                    self.cur.data.extend_from_slice(value);
                    self.cur.has_data = true;
                }
                b"event" => self.cur.name = Some(value.to_vec()),
                b"id" => self.cur.has_id = true,
                _ => {}
            }
        }
        let tail = &input[pos..];
        if tail.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        let mut keep = Vec::with_capacity(tail.len());
        keep.extend_from_slice(tail);
        self.buf = keep;
        Ok(res)
    }
}

fn memchr_nl(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == b'\n')
}

/// True when `data` holds a JSON key `"content"` whose value is a non-empty string.
/// `"reasoning_content"` does not match (the key must start right after a quote).
pub fn has_nonempty_content(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":";
    let mut start = 0;
    while start + KEY.len() <= data.len() {
        let Some(off) = find(&data[start..], KEY) else {
            return false;
        };
        let mut i = start + off + KEY.len();
        while i < data.len() && data[i] == b' ' {
            i += 1;
        }
        if i + 1 < data.len() && data[i] == b'"' && data[i + 1] != b'"' {
            return true;
        }
        start = start + off + KEY.len();
    }
    false
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parts: &[&[u8]]) -> (Vec<Event>, usize) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut comments = 0;
        for part in parts {
            let r = p.feed(part, |e| out.push(e.clone()));
            comments += r.map(|r| r.comments).unwrap_or(usize::MAX);
        }
        (out, comments)
    }

    #[test]
    fn splits_events_across_reads_and_crlf() {
        let (evs, comments) = collect(&[
            b"retry: 2000\n\nid: 1\nda",
            b"ta: {\"content\":\"Hel\"}\r\n\r\n: ping\n\nid: 2\nevent: stop\ndata: {}\n\n",
        ]);
        assert_eq!(comments, 1);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, b"{\"content\":\"Hel\"}");
        assert!(evs[0].has_id);
        assert_eq!(evs[1].name.as_deref(), Some(&b"stop"[..]));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let (evs, _) = collect(&[b"data: a\ndata: b\n\ndata: [DONE]\n\n"]);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, b"a\nb");
        assert_eq!(evs[1].data, b"[DONE]");
    }

    #[test]
    fn content_detection() {
        assert!(has_nonempty_content(
            br#"{"choices":[{"delta":{"content":"tok "}}]}"#
        ));
        assert!(!has_nonempty_content(
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!has_nonempty_content(
            br#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#
        ));
        assert!(!has_nonempty_content(br#"{"content":null}"#));
        assert!(has_nonempty_content(br#"{"content": "x"}"#));
    }
}
