//! HTTP/1.1 on the wire, as far as a client posting to an upstream needs it: the request
//! serialised once, the response head parsed with `httparse`, and the body's framing
//! (chunked, by length, or until the connection closes) decoded in place, each piece of
//! data split off the read buffer without a copy.

use std::fmt;
use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

/// The longest response head accepted, and the longest chunk-size or trailer line.
pub const MAX_HEAD: usize = 64 * 1024;
/// Response headers accepted at most (hyper's default is 100 too).
const MAX_HEADERS: usize = 100;

/// The upstream spoke something that is not the HTTP/1.1 this client can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Header fields as they go on the wire, `name: value\r\n` each: the fields every request
/// carries are written out once, not once per request.
///
/// Not `Debug`: it holds the upstream key.
#[derive(Clone, Default)]
pub struct Fields(Vec<u8>);

impl Fields {
    pub fn new(headers: &HeaderMap) -> Self {
        let mut fields = Fields::default();
        for (name, value) in headers {
            fields.push(name.as_str(), value);
        }
        fields
    }

    /// `value` is a `HeaderValue` so that it has been checked: no CR or LF gets in.
    pub fn push(&mut self, name: &str, value: &HeaderValue) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value.as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }
}

/// A header value checked as `HeaderValue::from_str` checks one (no control characters but
/// tab), without copying it into one.
#[derive(Debug, Clone, Copy)]
pub struct FieldValue<'a>(&'a str);

impl<'a> FieldValue<'a> {
    pub fn new(value: &'a str) -> Option<Self> {
        let allowed = |&b: &u8| b == b'\t' || (b >= b' ' && b != 0x7f);
        value.as_bytes().iter().all(allowed).then_some(Self(value))
    }
}

/// A request's own header field, written after the common [`Fields`].
pub type Extra<'a> = (&'static str, FieldValue<'a>);

/// `POST {target}` with `Host`, `fields`, `extra`, `Content-Length` and `body`, in one buffer
/// so that it goes out in one write.
pub fn post_request(
    target: &str,
    host: &HeaderValue,
    fields: &Fields,
    extra: Option<Extra<'_>>,
    body: &[u8],
) -> Bytes {
    let extra_len = extra.map_or(0, |(name, value)| name.len() + value.0.len() + 4);
    let mut out = BytesMut::with_capacity(
        target.len() + host.len() + fields.0.len() + extra_len + body.len() + 64,
    );
    out.put_slice(b"POST ");
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(host.as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(&fields.0);
    if let Some((name, FieldValue(value))) = extra {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"content-length: ");
    put_decimal(&mut out, body.len());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
    out.freeze()
}

fn put_decimal(out: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// A final response's head: its framing, and of its other fields the ones the gateway acts
/// on. The rest are not relayed, so they are not kept.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub framing: Framing,
    /// The connection may carry another request once this body has been read.
    pub keep_alive: bool,
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked(Chunked),
    /// This many bytes are still to come.
    Length(u64),
    /// Everything until the upstream closes the connection.
    UntilClose,
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size,
    /// This many bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// Takes a complete final response head off the front of `buf`, skipping interim (1xx)
/// responses; `None` while it is incomplete.
pub fn take_head(buf: &mut BytesMut) -> Result<Option<Head>, WireError> {
    loop {
        // Uninitialised slots: filling 100 empty headers (3.2 KB) cost more than parsing
        // a typical head.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let length = match parsed {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(WireError("the answer's head is too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError("the answer has too many headers"));
            }
            Err(_) => return Err(WireError("the answer is not HTTP/1.1")),
        };
        let code = response.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|_| WireError("the answer's status code is invalid"))?;
        if code == 101 {
            return Err(WireError("the upstream switched protocols"));
        }
        if status.is_informational() {
            // `100 Continue` and the like: the final answer follows.
            buf.advance(length);
            continue;
        }
        let head = read_head(status, response.version == Some(1), response.headers)?;
        buf.advance(length);
        return Ok(Some(head));
    }
}

fn read_head(
    status: StatusCode,
    http11: bool,
    fields: &[httparse::Header<'_>],
) -> Result<Head, WireError> {
    let mut keep_alive = http11;
    let mut content_type = None;
    let mut retry_after = None;
    // Whether the last transfer coding of all `Transfer-Encoding` fields is `chunked`; `None`
    // without such a field.
    let mut chunked = None;
    // Read only where no `Transfer-Encoding` overrides it: until then, a bad one is no error.
    let mut length = Ok(None);
    // httparse has checked the names (tokens) and values (no control characters but tab).
    for field in fields {
        let name = field.name.as_bytes();
        let items = || {
            field
                .value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|item| !item.is_empty())
        };
        if name.eq_ignore_ascii_case(b"connection") {
            for option in items() {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = items().next_back();
            chunked = Some(last.map_or(chunked == Some(true), |coding| {
                coding.eq_ignore_ascii_case(b"chunked")
            }));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = length.and_then(|length| content_length(field.value, length));
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type = content_type.or_else(|| HeaderValue::from_bytes(field.value).ok());
        } else if name.eq_ignore_ascii_case(b"retry-after") {
            retry_after = retry_after.or_else(|| HeaderValue::from_bytes(field.value).ok());
        }
    }
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        // RFC 9112 §6.3: these never have a body, whatever the headers say.
        Framing::Done
    } else if let Some(chunked) = chunked {
        if chunked {
            // With Content-Length beside it the message is suspect: read it as chunked, as
            // the RFC says, but never send on this connection again.
            if !matches!(length, Ok(None)) {
                keep_alive = false;
            }
            Framing::Chunked(Chunked::Size)
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else {
        match length? {
            Some(0) => Framing::Done,
            Some(length) => Framing::Length(length),
            None => {
                keep_alive = false;
                Framing::UntilClose
            }
        }
    };
    Ok(Head {
        status,
        content_type,
        retry_after,
        framing,
        keep_alive,
    })
}

/// `length` after one more `Content-Length` field: every length in every such field has to
/// be the same.
fn content_length(value: &[u8], mut length: Option<u64>) -> Result<Option<u64>, WireError> {
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        let invalid = WireError("the answer's Content-Length is invalid");
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(invalid);
        }
        let n = std::str::from_utf8(item)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(invalid)?;
        if length.is_some_and(|l| l != n) {
            return Err(invalid);
        }
        length = Some(n);
    }
    Ok(length)
}

/// The next piece of body data in `buf`, split off it; `None` when `buf` holds no more of
/// the body (then `framing` is [`Framing::Done`] if the body is complete).
pub fn take_data(framing: &mut Framing, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    loop {
        match framing {
            Framing::Done => return Ok(None),
            Framing::UntilClose => {
                return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                if *left == 0 {
                    *framing = Framing::Done;
                }
                return Ok(Some(buf.split_to(take).freeze()));
            }
            Framing::Chunked(state) => match *state {
                Chunked::Size => {
                    let Some((text, whole)) = line(buf)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&buf[..text])?;
                    buf.advance(whole);
                    *state = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    *state = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                Chunked::DataEnd => {
                    let Some((text, whole)) = line(buf)? else {
                        return Ok(None);
                    };
                    if text != 0 {
                        return Err(WireError("a chunk is longer than its size"));
                    }
                    buf.advance(whole);
                    *state = Chunked::Size;
                }
                Chunked::Trailers => {
                    let Some((text, whole)) = line(buf)? else {
                        return Ok(None);
                    };
                    buf.advance(whole);
                    if text == 0 {
                        *framing = Framing::Done;
                    }
                }
            },
        }
    }
}

/// A chunk-size line's size; extensions after `;` are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let invalid = WireError("invalid chunk size");
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid);
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let digit = char::from(b).to_digit(16).ok_or(invalid)?;
        Ok(size << 4 | u64::from(digit))
    })
}

/// Where the first line in `buf` ends: the length of its text (without its CRLF, or a bare
/// LF) and of the whole line; `None` while it is incomplete.
fn line(buf: &[u8]) -> Result<Option<(usize, usize)>, WireError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_HEAD {
            return Err(WireError("a chunk-size or trailer line is too long"));
        }
        return Ok(None);
    };
    let text = if lf > 0 && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Ok(Some((text, lf + 1)))
}

#[cfg(test)]
mod tests;
