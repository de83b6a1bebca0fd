//! One streamed chunk: the upstream's JSON kept byte for byte, plus what the gateway needs
//! from it, found in a single borrowing parse (no copy of the text it points into).

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::UpstreamError;

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
#[derive(Debug, Clone)]
pub struct Chunk {
    raw: Bytes,
    content: Option<Range<usize>>,
    reasoning: Option<Range<usize>>,
    tool_calls: Option<Range<usize>>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// `choices` is missing or `[]`: a usage-only chunk.
    pub choices_empty: bool,
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<DeltaView<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

impl Chunk {
    /// Parses one `data:` payload. An error the upstream reports in-band becomes `Err`.
    pub fn parse(raw: Bytes) -> Result<Chunk, UpstreamError> {
        let view: ChunkView<'_> = serde_json::from_slice(&raw)
            .map_err(|e| UpstreamError::InvalidEvent(format!("not a JSON chunk ({e})")))?;
        if let Some(error) = view.error {
            let message = serde_json::from_str::<ErrorBody<'_>>(error.get())
                .ok()
                .and_then(|b| b.message.map(Cow::into_owned))
                .unwrap_or_else(|| error.get().to_owned());
            return Err(UpstreamError::Reported(message));
        }
        if view.object.as_deref() == Some("error") {
            let message = view.message.map(Cow::into_owned);
            return Err(UpstreamError::Reported(
                message.unwrap_or_else(|| "unspecified error".to_owned()),
            ));
        }
        let base = raw.as_ptr() as usize;
        let span = |v: Option<&RawValue>| {
            v.filter(|v| !matches!(v.get(), "\"\"" | "null" | "[]"))
                .map(|v| {
                    let start = v.get().as_ptr() as usize - base;
                    start..start + v.get().len()
                })
        };
        let choices = view.choices.unwrap_or_default();
        let finish_reason = choices
            .iter()
            .find_map(|c| c.finish_reason.as_deref().map(str::to_owned));
        let first = choices.iter().find(|c| c.index == 0);
        let delta = first.and_then(|c| c.delta.as_ref());
        let chunk = Chunk {
            content: span(delta.and_then(|d| d.content)),
            reasoning: span(delta.and_then(|d| d.reasoning_content.or(d.reasoning))),
            tool_calls: span(delta.and_then(|d| d.tool_calls)),
            finish_reason,
            usage: view.usage,
            choices_empty: choices.is_empty(),
            raw: Bytes::new(),
        };
        Ok(Chunk { raw, ..chunk })
    }

    /// The chunk's JSON exactly as the upstream sent it.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The first choice's `delta.content` as its JSON string literal (escapes kept).
    pub fn content_json(&self) -> Option<&[u8]> {
        self.content.clone().map(|r| &self.raw[r])
    }

    /// `delta.reasoning_content` or `delta.reasoning`, as a JSON string literal.
    pub fn reasoning_json(&self) -> Option<&[u8]> {
        self.reasoning.clone().map(|r| &self.raw[r])
    }

    /// `delta.tool_calls` as the upstream sent it.
    pub fn tool_calls_json(&self) -> Option<&[u8]> {
        self.tool_calls.clone().map(|r| &self.raw[r])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Chunk, UpstreamError> {
        Chunk::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn content_is_kept_as_its_escaped_json_literal() {
        let c = parse(r#"{"choices":[{"index":0,"delta":{"content":"a \"q\"\n"}}]}"#).unwrap();
        assert_eq!(c.content_json().unwrap(), br#""a \"q\"\n""#);
        assert!(c.has_delta());
        assert!(c.finish_reason.is_none());
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
            assert_eq!(c.usage.unwrap().total_tokens, 7, "{s}");
            assert!(!c.has_delta());
        }
    }

    #[test]
    fn empty_and_null_fields_are_no_delta() {
        let c = parse(r#"{"choices":[{"delta":{"role":"assistant","content":"","tool_calls":null}}],"usage":null}"#).unwrap();
        assert!(!c.has_delta());
        assert!(c.usage.is_none());
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
    fn usage_can_be_stripped_from_a_finish_chunk() {
        let c = parse(r#"{"id":"x","choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":1}}"#).unwrap();
        let stripped = c.without_usage();
        assert!(!String::from_utf8_lossy(&stripped).contains("usage"));
        assert!(String::from_utf8_lossy(&stripped).contains("\"finish_reason\":\"stop\""));
    }
}
