use super::*;
use reqwest::header;

fn buf(bytes: &[u8]) -> BytesMut {
    BytesMut::from(bytes)
}

/// Feeds `wire` to `take_data` in pieces of `step` bytes and collects the body.
fn decode_in_steps(mut framing: Framing, wire: &[u8], step: usize) -> (Vec<u8>, Framing) {
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        buffer.extend_from_slice(piece);
        while let Some(data) = take_data(&mut framing, &mut buffer).unwrap() {
            out.extend_from_slice(&data);
        }
    }
    assert!(buffer.is_empty(), "left over: {buffer:?}");
    (out, framing)
}

#[test]
fn a_chunked_body_decodes_the_same_however_it_is_split() {
    let wire = b"4\r\ndata\r\n3;name=value\r\n: p\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
    for step in [1, 2, 3, 7, wire.len()] {
        let (body, framing) = decode_in_steps(Framing::Chunked(Chunked::Size), wire, step);
        assert_eq!(body, b"data: p0123456789", "step {step}");
        assert_eq!(framing, Framing::Done, "step {step}");
    }
}

#[test]
fn bare_line_feeds_end_chunk_lines_too() {
    let (body, framing) = decode_in_steps(Framing::Chunked(Chunked::Size), b"2\nhi\n0\n\n", 1);
    assert_eq!(body, b"hi");
    assert_eq!(framing, Framing::Done);
}

#[test]
fn broken_chunk_framing_is_an_error() {
    for wire in [
        &b"2\r\nhiX\r\n"[..],
        b"zz\r\n",
        b"\r\n",
        b"-1\r\n",
        b"10000000000000000\r\n",
    ] {
        let mut framing = Framing::Chunked(Chunked::Size);
        let mut buffer = buf(wire);
        let result = std::iter::from_fn(|| Some(take_data(&mut framing, &mut buffer)))
            .find(|r| !matches!(r, Ok(Some(_))));
        assert!(
            matches!(result, Some(Err(_))),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn an_endless_chunk_size_line_is_refused() {
    let mut framing = Framing::Chunked(Chunked::Size);
    let mut buffer = buf(&vec![b'0'; MAX_HEAD + 1]);
    assert!(take_data(&mut framing, &mut buffer).is_err());
}

#[test]
fn a_body_by_length_stops_at_its_length() {
    let mut framing = Framing::Length(5);
    let mut buffer = buf(b"hel");
    assert_eq!(
        take_data(&mut framing, &mut buffer).unwrap().unwrap(),
        "hel"
    );
    assert_eq!(take_data(&mut framing, &mut buffer).unwrap(), None);
    assert_eq!(framing, Framing::Length(2));
    buffer.extend_from_slice(b"loHTTP");
    assert_eq!(take_data(&mut framing, &mut buffer).unwrap().unwrap(), "lo");
    assert_eq!(framing, Framing::Done);
    assert_eq!(buffer, "HTTP", "what follows the body is left alone");
}

#[test]
fn a_body_until_close_takes_everything() {
    let mut framing = Framing::UntilClose;
    let mut buffer = buf(b"anything");
    assert_eq!(
        take_data(&mut framing, &mut buffer).unwrap().unwrap(),
        "anything"
    );
    assert_eq!(take_data(&mut framing, &mut buffer).unwrap(), None);
    assert_eq!(framing, Framing::UntilClose);
}

fn head(wire: &str) -> Result<Option<Head>, WireError> {
    take_head(&mut buf(wire.as_bytes()))
}

#[test]
fn a_head_is_taken_once_it_is_complete() {
    let mut buffer = buf(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n");
    assert!(take_head(&mut buffer).unwrap().is_none());
    buffer.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n5\r\n");
    let head = take_head(&mut buffer).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.content_type.unwrap(), "text/event-stream");
    assert_eq!(head.framing, Framing::Chunked(Chunked::Size));
    assert!(head.keep_alive);
    assert_eq!(buffer, "5\r\n", "the body's first bytes stay in the buffer");
}

#[test]
fn interim_answers_are_skipped() {
    let head = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 2\r\n\r\n{}")
        .unwrap()
        .unwrap();
    assert_eq!(head.status, 429);
    assert_eq!(head.retry_after.unwrap(), "3");
    assert_eq!(head.framing, Framing::Length(2));
}

#[test]
fn framing_and_keep_alive_follow_rfc_9112() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Framing::Done,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
            Framing::Done,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n",
            Framing::Length(7),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 7\r\n\r\n",
            Framing::Length(7),
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: Keep-Alive, Upgrade\r\ncontent-length: 7\r\n\r\n",
            Framing::Length(7),
            true,
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 7\r\n\r\n",
            Framing::Length(7),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 7\r\n\r\n",
            Framing::Length(7),
            true,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            Framing::Chunked(Chunked::Size),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 7\r\n\r\n",
            Framing::Chunked(Chunked::Size),
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            Framing::UntilClose,
            false,
        ),
    ];
    for (wire, framing, keep_alive) in cases {
        let head = head(wire).unwrap().unwrap();
        assert_eq!(
            (head.framing, head.keep_alive),
            (framing, keep_alive),
            "{wire:?}"
        );
    }
}

#[test]
fn heads_that_cannot_be_read_are_errors() {
    for wire in [
        "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-length: 8\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    ] {
        assert!(head(wire).is_err(), "{wire:?}");
    }
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    endless.resize(MAX_HEAD + 100, b'a');
    assert!(take_head(&mut buf(&endless)).is_err());
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
    assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
}

#[test]
fn a_request_goes_out_as_one_buffer() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-request-id", HeaderValue::from_static("r1"));
    let host = HeaderValue::from_static("127.0.0.1:8000");
    let fields = Fields::new(&headers);
    let id = FieldValue::new("r2").map(|id| ("x-trace", id));
    let request = post_request("/v1/chat/completions?x=1", &host, &fields, id, b"{\"a\":1}");
    assert_eq!(
        request,
        "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\
         content-type: application/json\r\nx-request-id: r1\r\nx-trace: r2\r\n\
         content-length: 7\r\n\r\n{\"a\":1}"
    );
    let empty = post_request("/", &host, &Fields::default(), None, &[b'x'; 1234]);
    assert!(
        empty.starts_with(
            b"POST / HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-length: 1234\r\n\r\nx"
        )
    );
}

#[test]
fn field_values_are_checked_as_header_values_are() {
    for value in ["r1", "a b\tc", "~!\"#", "é", ""] {
        assert!(FieldValue::new(value).is_some(), "{value:?}");
        assert!(HeaderValue::from_str(value).is_ok(), "{value:?}");
    }
    for value in ["a\r\nb: c", "a\nb", "\u{7f}", "\0", "\u{1b}"] {
        assert!(FieldValue::new(value).is_none(), "{value:?}");
        assert!(HeaderValue::from_str(value).is_err(), "{value:?}");
    }
}
