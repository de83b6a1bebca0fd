//! A validating JSON scanner that walks a text once and hands out byte ranges: for reading a
//! few fields out of an upstream chunk the gateway otherwise relays untouched, and the members
//! of a client's request body, forwarded as written.
//!
//! Why not serde_json: deserialising each chunk into a borrowed view cost ~6,000 instructions
//! for a 230-byte chunk (building `Vec`s, checking UTF-8 per string, matching every key), the
//! largest single cost of relaying an answer (bench/callgrind.sh). Reading a 4 KB chat history
//! (the body, its `messages`, each message, each content string decoded to be counted) took
//! serde_json ~43 instructions a byte in three passes; the scanner takes ~24 in two
//! (benches/request_parse.rs). The scanner accepts
//! exactly RFC 8259 JSON, as serde_json does (same escapes, number grammar, nesting limit of
//! 128), and leaves decoding to the rare caller that needs a value (`string`, `u64`).

use std::borrow::Cow;
use std::ops::Range;

/// serde_json's default recursion limit; deeper input is rejected the same way.
const MAX_DEPTH: usize = 128;

/// Where and why a text is not the JSON expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub type Scan<T> = Result<T, ScanError>;

/// The first byte at or after `from` that ends a run of plain string content: a quote, a
/// backslash or a control character; `text.len()` if there is none. Eight bytes per step (most
/// of a chunk is string content), using the classic "does this word contain a zero byte" trick:
/// `(x - 0x01…) & !x & 0x80…` flags the lowest such byte exactly (a borrow only runs upward).
/// (memchr's vector search for the quote and backslash, with a vectorised check for control
/// characters, cost more: chat text has an escape every few dozen bytes.)
pub fn stop_byte(text: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const CONTROL: u64 = u64::from_ne_bytes([0x20; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let mut at = from;
    while let Some(word) = text.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let below_space = w.wrapping_sub(CONTROL) & !w & HIGH;
        let stops = below_space | zero(w ^ QUOTE) | zero(w ^ BACKSLASH);
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + text[at..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(text.len() - at)
}

/// A position in a text. The caller checks that the text is UTF-8 (usually with a quick
/// `is_ascii`); string contents are not checked again.
pub struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Cursor {
            text,
            at: 0,
            depth: 0,
        }
    }

    fn fail<T>(&self, what: &'static str) -> Scan<T> {
        Err(self.error_here(what))
    }

    /// An error at the current position, for callers checking what they read.
    pub fn error_here(&self, what: &'static str) -> ScanError {
        ScanError { at: self.at, what }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, without taking it.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(what)
        }
    }

    /// Succeeds only if nothing but whitespace is left.
    pub fn end(&mut self) -> Scan<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters"),
        }
    }

    /// Takes `null` if it comes next.
    pub fn null(&mut self) -> Scan<bool> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            self.fail("expected value")
        }
    }

    /// A string, quotes included in the range; escapes are checked, not decoded.
    pub fn string(&mut self) -> Scan<Range<usize>> {
        self.string_escaped().map(|(span, _)| span)
    }

    /// A string's range, and whether it holds an escape (then it must be decoded to be read).
    fn string_escaped(&mut self) -> Scan<(Range<usize>, bool)> {
        self.skip_whitespace();
        let start = self.at;
        self.expect(b'"', "expected string")?;
        let mut escaped = false;
        loop {
            self.at = stop_byte(self.text, self.at);
            match self.text.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok((start..self.at, escaped));
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape()?;
                    escaped = true;
                }
                Some(_) => return self.fail("control character in string"),
                None => return self.fail("unterminated string"),
            }
        }
    }

    fn escape(&mut self) -> Scan<()> {
        match self.text.get(self.at) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
            Some(b'u') => {
                let hex = self.text.get(self.at + 1..self.at + 5);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    self.at += 1;
                    return self.fail("invalid \\u escape");
                }
                self.at += 5;
            }
            _ => return self.fail("invalid escape"),
        }
        Ok(())
    }

    /// A number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub fn number(&mut self) -> Scan<Range<usize>> {
        self.skip_whitespace();
        let start = self.at;
        if self.text.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.text.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("invalid number"),
        }
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            if !self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
                return self.fail("invalid number");
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.text.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.text.get(self.at) {
                self.at += 1;
            }
            if !self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
                return self.fail("invalid number");
            }
            self.digits();
        }
        Ok(start..self.at)
    }

    fn digits(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    /// A whole number that fits in a `u64` (no sign, fraction or exponent), as serde_json
    /// reads one into a `u64` field.
    pub fn u64(&mut self) -> Scan<u64> {
        let span = self.number()?;
        let digits = &self.text[span.clone()];
        let parsed = digits.iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit()
                .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
                .flatten()
        });
        parsed.ok_or(ScanError {
            at: span.start,
            what: "expected a whole number",
        })
    }

    /// Any value, checked; its range without surrounding whitespace.
    pub fn value(&mut self) -> Scan<Range<usize>> {
        let start = match self.peek() {
            Some(_) => self.at,
            None => return self.fail("expected value"),
        };
        match self.text[self.at] {
            b'"' => {
                self.string()?;
            }
            b'{' => self.object(|cursor, _| cursor.value().map(drop))?,
            b'[' => self.array(|cursor| cursor.value().map(drop))?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            _ => return self.fail("expected value"),
        }
        Ok(start..self.at)
    }

    fn enter(&mut self) -> Scan<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("recursion limit exceeded");
        }
        Ok(())
    }

    /// Takes the closing bracket of the object or array being read.
    fn leave(&mut self) -> Scan<()> {
        self.at += 1;
        self.depth -= 1;
        Ok(())
    }

    /// An object: `member` is called with each key (decoded if it holds escapes, which is
    /// rare) and must take the value that follows.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, [u8]>) -> Scan<()>,
    ) -> Scan<()> {
        if !self.open_object()? {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            if !self.after_member()? {
                return Ok(());
            }
        }
    }

    /// Takes an object's `{`; `false` if the object is empty (then its `}` is taken too).
    /// The members follow as [`Cursor::key`], the value, [`Cursor::after_member`].
    pub fn open_object(&mut self) -> Scan<bool> {
        self.expect(b'{', "expected object")?;
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.leave()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// A member's key and its `:`.
    pub fn key(&mut self) -> Scan<Cow<'a, [u8]>> {
        let (key, escaped) = self.key_span()?;
        let key = if escaped {
            Cow::Owned(decode_string(&self.text[key]).into_owned().into_bytes())
        } else {
            Cow::Borrowed(&self.text[key.start + 1..key.end - 1])
        };
        Ok(key)
    }

    /// A member's key as its range, quotes included, and whether it holds an escape; then its
    /// `:`.
    pub fn key_span(&mut self) -> Scan<(Range<usize>, bool)> {
        let key = self.string_escaped()?;
        self.expect(b':', "expected ':'")?;
        Ok(key)
    }

    /// After a member's value: `true` if a `,` says another member follows, `false` once the
    /// object's `}` is taken.
    pub fn after_member(&mut self) -> Scan<bool> {
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(true)
            }
            Some(b'}') => self.leave().map(|()| false),
            _ => self.fail("expected ',' or '}'"),
        }
    }

    /// A cursor at `at`, outside any object or array: for reading one value where a scan of
    /// a text with the same bytes before `at` found one (see `ChunkReader`).
    pub fn starting_at(text: &'a [u8], at: usize) -> Self {
        Cursor { text, at, depth: 0 }
    }

    /// Where the cursor is.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Continues a top-level object at `at`, where a scan of a text with the same bytes
    /// before `at` stood right after [`Cursor::after_member`] returned `true`: that scan's
    /// verdict on those bytes holds for this text too.
    pub fn resume_object(&mut self, at: usize) -> Scan<()> {
        self.at = at;
        self.enter()
    }

    /// An array: `element` is called once per element and must take it.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Scan<()>) -> Scan<()> {
        self.expect(b'[', "expected array")?;
        self.enter()?;
        if self.peek() == Some(b']') {
            return self.leave();
        }
        loop {
            element(self)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => return self.leave(),
                _ => return self.fail("expected ',' or ']'"),
            }
        }
    }
}

/// Decodes a string the cursor returned (quotes included): borrowed when it has no escapes.
pub fn decode_string(literal: &[u8]) -> Cow<'_, str> {
    let inner = &literal[1..literal.len() - 1];
    match (inner.contains(&b'\\'), std::str::from_utf8(inner)) {
        (false, Ok(text)) => Cow::Borrowed(text),
        // The cursor checked the escapes; serde_json decodes them. Only a lone surrogate
        // (`\ud800`), which no Rust string can hold, fails there: it is then kept as written.
        _ => Cow::Owned(
            serde_json::from_slice::<String>(literal)
                .unwrap_or_else(|_| String::from_utf8_lossy(inner).into_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Scan<Range<usize>> {
        let mut cursor = Cursor::new(text.as_bytes());
        let span = cursor.value()?;
        cursor.end()?;
        Ok(span)
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for text in [
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{}}"#,
            " [ ] ",
            r#""""#,
            "-0.0E-0",
            "{\"k\":\"é ✓\"}",
        ] {
            assert!(whole(text).is_ok(), "{text}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "1e",
            "-",
            "+1",
            ".5",
            "tru",
            "nul",
            "\"\\x\"",
            "\"\\u12G4\"",
            "\"a\nb\"",
            "\"abc",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "1 2",
            "NaN",
            "[\"\\u12\"]",
        ] {
            assert!(whole(text).is_err(), "{text:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(whole(&ok).is_ok());
        assert!(whole(&deep).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
    }

    #[test]
    fn spans_exclude_surrounding_whitespace() {
        assert_eq!(whole("  [1, 2]\n"), Ok(2..8));
    }

    #[test]
    fn whole_numbers_fit_u64_or_fail() {
        let read = |t: &str| Cursor::new(t.as_bytes()).u64();
        assert_eq!(read("18446744073709551615"), Ok(u64::MAX));
        assert!(read("18446744073709551616").is_err());
        assert!(read("-1").is_err());
        assert!(read("1.0").is_err());
        assert!(read("1e3").is_err());
    }

    #[test]
    fn the_word_scan_finds_the_first_stop_byte_anywhere() {
        for len in (0..20).chain([31, 32, 33, 40, 63, 64, 65, 100, 129, 200]) {
            for at in 0..len {
                for stop in [b'"', b'\\', 0x00, 0x1f] {
                    let mut text = vec![b'a'; len];
                    text[at] = stop;
                    // Bytes above 0x7f and just above the control range must not stop it.
                    if at > 0 {
                        text[at - 1] = 0xC3;
                    }
                    assert_eq!(stop_byte(&text, 0), at, "{text:?}");
                }
            }
            assert_eq!(stop_byte(&vec![0x20; len], 0), len);
            assert_eq!(stop_byte(&vec![0xFF; len], 0), len);
        }
    }

    #[test]
    fn the_first_of_two_stops_is_found_from_any_start() {
        let naive = |text: &[u8], from: usize| {
            (from..text.len())
                .find(|&i| text[i] < 0x20 || text[i] == b'"' || text[i] == b'\\')
                .unwrap_or(text.len())
        };
        for len in [40, 70, 150] {
            for from in [0, 1, 7, 9] {
                for first in 0..len {
                    for (a, b) in [(b'\n', b'"'), (b'"', 0x01), (b'\\', b'\t')] {
                        let mut text = vec![b'x'; len];
                        text[first] = a;
                        text[(first * 7 + 3) % len] = b;
                        assert_eq!(
                            stop_byte(&text, from),
                            naive(&text, from),
                            "{len} {from} {first}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strings_decode_with_or_without_escapes() {
        assert_eq!(decode_string(br#""stop""#), "stop");
        assert_eq!(decode_string(br#""a\"b\u00e9""#), "a\"bé");
    }
}
