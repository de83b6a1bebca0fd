//! The browser dialect's events, written straight into a stream's log: unnamed delta events
//! (`EventSource.onmessage` sees them), `event: error`, and one final `event: stop`.
//! Delta text is copied as the upstream's JSON string literal, never decoded and re-encoded.

use std::io::Write;

use serde_json::json;

use crate::upstream::{Chunk, Usage};

/// The first line of every browser stream: how long EventSource waits before reconnecting.
pub const RETRY: &[u8] = b"retry: 2000\n\n";

/// Writes `chunk`'s delta as event `id`; returns false (writing nothing) when it has none.
pub fn write_delta(buf: &mut Vec<u8>, id: u64, chunk: &Chunk) -> bool {
    if !chunk.has_delta() {
        return false;
    }
    let _ = write!(buf, "id: {id}\ndata: {{");
    let mut first = true;
    for (name, value) in [
        ("content", chunk.content_json()),
        ("reasoning", chunk.reasoning_json()),
        ("tool_calls", chunk.tool_calls_json()),
    ] {
        if let Some(value) = value {
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.push(b'"');
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b"\":");
            buf.extend_from_slice(value);
        }
    }
    buf.extend_from_slice(b"}\n\n");
    true
}

pub fn write_error(buf: &mut Vec<u8>, id: u64, code: &str, message: &str) {
    let data = json!({"code": code, "message": message});
    let _ = write!(buf, "id: {id}\nevent: error\ndata: {data}\n\n");
}

pub fn write_stop(
    buf: &mut Vec<u8>,
    id: u64,
    finish_reason: &str,
    (usage, estimated): (Usage, bool),
    stream_id: &str,
) {
    let mut usage = json!(usage);
    if estimated {
        usage["estimated"] = json!(true);
    }
    let data = json!({"finish_reason": finish_reason, "usage": usage, "stream_id": stream_id});
    let _ = write!(buf, "id: {id}\nevent: stop\ndata: {data}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_delta_keeps_the_upstream_escapes() {
        let chunk = Chunk::parse(Bytes::from_static(
            br#"{"choices":[{"index":0,"delta":{"content":"a\"b\u00e9","reasoning_content":"r"}}]}"#,
        ))
        .unwrap();
        let mut buf = Vec::new();
        assert!(write_delta(&mut buf, 7, &chunk));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "id: 7\ndata: {\"content\":\"a\\\"b\\u00e9\",\"reasoning\":\"r\"}\n\n"
        );
    }

    #[test]
    fn stop_marks_an_estimate() {
        let mut buf = Vec::new();
        write_stop(&mut buf, 3, "stop", (Usage::default(), true), "abc");
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("id: 3\nevent: stop\ndata: {"));
        assert!(text.contains("\"estimated\":true"));
        assert!(text.contains("\"stream_id\":\"abc\""));
    }
}
