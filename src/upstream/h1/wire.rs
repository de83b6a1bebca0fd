//! HTTP/1.1 on the wire, as far as a client posting to an upstream needs it: the request
//! serialised once, the response head parsed with `httparse`, and the body's framing
//! (chunked, by length, or until the connection closes) decoded in place, each piece of
//! data split off the read buffer without a copy.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

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

/// `POST {target}` with `Host`, `headers`, `Content-Length` and `body`, in one buffer so
/// that it goes out in one write.
pub fn post_request(target: &str, host: &HeaderValue, headers: &HeaderMap, body: &[u8]) -> Bytes {
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let mut out = BytesMut::with_capacity(target.len() + host.len() + fields + body.len() + 64);
    out.put_slice(b"POST ");
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(host.as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"content-length: ");
    out.put_slice(body.len().to_string().as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
    out.freeze()
}

/// A final response's head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
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
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let length = match response.parse(buf) {
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
    let mut headers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| WireError("the answer has an invalid header name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| WireError("the answer has an invalid header value"))?;
        headers.append(name, value);
    }
    let mut keep_alive = http11;
    for value in headers.get_all(header::CONNECTION) {
        for option in value.as_bytes().split(|&b| b == b',') {
            let option = option.trim_ascii();
            if option.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    // RFC 9112 §6.3: these never have a body, whatever the headers say.
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Head {
            status,
            headers,
            framing: Framing::Done,
            keep_alive,
        });
    }
    let framing = if headers.contains_key(header::TRANSFER_ENCODING) {
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty());
        if last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            // With Content-Length beside it the message is suspect: read it as chunked, as
            // the RFC says, but never send on this connection again.
            if headers.contains_key(header::CONTENT_LENGTH) {
                keep_alive = false;
            }
            Framing::Chunked(Chunked::Size)
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else if let Some(length) = content_length(&headers)? {
        if length == 0 {
            Framing::Done
        } else {
            Framing::Length(length)
        }
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Head {
        status,
        headers,
        framing,
        keep_alive,
    })
}

/// The one length all `Content-Length` fields agree on.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
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
