//! `Chunk::parse` against an oracle: the same rules written the obvious way, over a parsed
//! `serde_json::Value`. The parser scans bytes for speed; for any chunk-shaped JSON (well
//! formed, then with one node swapped for anything) both must agree on every field it reports,
//! and on whether the chunk is invalid or an upstream error.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use streamgate::upstream::{Chunk, ChunkReader, UpstreamError, Usage};

use crate::json;

/// What a chunk says, comparable across the two implementations.
// Test-only values compared once each: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
enum Reading {
    Invalid,
    /// The message only where it is unambiguous (an object with a string `message`).
    Reported(Option<String>),
    Chunk {
        content: Option<Value>,
        reasoning: Option<Value>,
        tool_calls: Option<Value>,
        finish_reason: Option<String>,
        usage: Option<Usage>,
        choices_empty: bool,
    },
}

fn parsed(text: &str) -> Reading {
    reading(Chunk::parse(Bytes::copy_from_slice(text.as_bytes())))
}

fn reading(result: Result<Chunk, UpstreamError>) -> Reading {
    let literal = |l: Option<&[u8]>| l.map(|l| serde_json::from_slice::<Value>(l).unwrap());
    match result {
        Err(UpstreamError::InvalidEvent(_)) => Reading::Invalid,
        Err(UpstreamError::Reported(m)) => Reading::Reported(Some(m)),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(c) => Reading::Chunk {
            content: literal(c.content_json()),
            reasoning: literal(c.reasoning_json()),
            tool_calls: literal(c.tool_calls_json()),
            finish_reason: c.finish_reason().map(str::to_owned),
            usage: c.usage(),
            choices_empty: c.choices_empty,
        },
    }
}

/// The documented rules, one by one. `None` means invalid.
fn oracle(text: &str) -> Reading {
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(text) else {
        return Reading::Invalid;
    };
    oracle_object(&top).unwrap_or(Reading::Invalid)
}

fn present(map: &Map<String, Value>, key: &str) -> Option<Value> {
    map.get(key).filter(|v| !v.is_null()).cloned()
}

fn string_or_null(map: &Map<String, Value>, key: &str) -> Option<Option<String>> {
    match present(map, key) {
        None => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

fn whole(value: &Value) -> Option<u64> {
    value.as_u64()
}

fn oracle_object(top: &Map<String, Value>) -> Option<Reading> {
    let choices = match present(top, "choices") {
        None => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return None,
    };
    let mut first_delta = None;
    let mut finish_reason = None;
    for choice in &choices {
        let choice = choice.as_object()?;
        let index = match choice.get("index") {
            None => 0,
            Some(v) => u32::try_from(whole(v)?).ok()?,
        };
        let delta = match present(choice, "delta") {
            None => None,
            Some(Value::Object(d)) => Some(d),
            Some(_) => return None,
        };
        let reason = string_or_null(choice, "finish_reason")?;
        if finish_reason.is_none() {
            finish_reason = reason;
        }
        if index == 0 && first_delta.is_none() {
            first_delta = Some(delta.unwrap_or_default());
        }
    }
    let usage = match present(top, "usage") {
        None => None,
        Some(Value::Object(u)) => {
            let field = |k: &str| u.get(k).map_or(Some(0), whole);
            Some(Usage {
                prompt_tokens: field("prompt_tokens")?,
                completion_tokens: field("completion_tokens")?,
                total_tokens: field("total_tokens")?,
            })
        }
        Some(_) => return None,
    };
    let object = string_or_null(top, "object")?;
    let message = string_or_null(top, "message")?;
    if let Some(error) = present(top, "error") {
        let message = match error.get("message") {
            Some(Value::String(m)) if error.is_object() => Some(m.clone()),
            _ => None,
        };
        return Some(Reading::Reported(message));
    }
    if object.as_deref() == Some("error") {
        return Some(Reading::Reported(Some(
            message.unwrap_or_else(|| "unspecified error".to_owned()),
        )));
    }
    let delta = first_delta.unwrap_or_default();
    let visible = |v: Option<Value>| {
        v.filter(|v| !matches!(v, Value::String(s) if s.is_empty()) && v != &json!([]))
    };
    Some(Reading::Chunk {
        content: visible(present(&delta, "content")),
        reasoning: visible(
            present(&delta, "reasoning_content").or_else(|| present(&delta, "reasoning")),
        ),
        tool_calls: visible(present(&delta, "tool_calls")),
        finish_reason,
        usage,
        choices_empty: choices.is_empty(),
    })
}

/// The parser's message for an error whose shape the oracle leaves open is not compared.
fn comparable(parser: Reading, oracle: &Reading) -> Reading {
    match (parser, oracle) {
        (Reading::Reported(_), Reading::Reported(None)) => Reading::Reported(None),
        (parser, _) => parser,
    }
}

/// A chunk as upstreams send them, in every variety the gateway reads.
fn chunk() -> impl Strategy<Value = Value> {
    let text = prop_oneof![Just(String::new()), "[a-z ]{0,8}", any::<String>()];
    let delta = (
        prop::option::of(text.clone()),
        prop::option::of(text.clone()),
        any::<bool>(),
        prop::option::of(Just(json!([{"index": 0, "function": {"arguments": "{}"}}]))),
    )
        .prop_map(|(content, reasoning, reasoning_content, tools)| {
            let mut d = Map::new();
            d.insert("role".into(), json!("assistant"));
            if let Some(c) = content {
                d.insert("content".into(), json!(c));
            }
            if let Some(r) = reasoning {
                let key = if reasoning_content {
                    "reasoning_content"
                } else {
                    "reasoning"
                };
                d.insert(key.into(), json!(r));
            }
            if let Some(t) = tools {
                d.insert("tool_calls".into(), t);
            }
            Value::Object(d)
        });
    let choice = (0u32..3, delta, prop::option::of(prop::sample::select(&["stop", "length", "tool_calls"][..])))
        .prop_map(|(index, delta, finish)| json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}));
    let usage = (any::<u32>(), any::<u32>())
        .prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": u64::from(p) + u64::from(c)}));
    (prop::collection::vec(choice, 0..3), prop::option::of(usage), 0u8..8).prop_map(|(choices, usage, kind)| {
        match kind {
            0 => json!({"error": {"message": "overloaded", "type": "server_error"}}),
            1 => json!({"object": "error", "message": "bad things", "code": 500}),
            _ => json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices, "usage": usage}),
        }
    })
}

/// Replaces the `k`-th node (pre-order, modulo the count) of `value` with `with`.
fn swap_node(value: &mut Value, k: usize, with: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, k: &mut usize, with: &mut Option<Value>) {
        if *k == 0 {
            if let Some(w) = with.take() {
                *v = w;
            }
            return;
        }
        *k -= 1;
        match v {
            Value::Array(a) => a.iter_mut().for_each(|c| walk(c, k, with)),
            Value::Object(o) => o.values_mut().for_each(|c| walk(c, k, with)),
            _ => {}
        }
    }
    let mut k = k % count(value);
    walk(value, &mut k, &mut Some(with));
}

proptest! {
    #[test]
    fn well_formed_chunks_read_as_the_oracle_reads_them(chunk in chunk()) {
        let text = chunk.to_string();
        let want = oracle(&text);
        prop_assert_eq!(comparable(parsed(&text), &want), want, "{}", text);
    }

    #[test]
    fn chunks_with_any_node_swapped_read_as_the_oracle_reads_them(
        mut chunk in chunk(),
        at in any::<usize>(),
        with in json::value(),
    ) {
        swap_node(&mut chunk, at, with);
        let text = chunk.to_string();
        let want = oracle(&text);
        prop_assert_eq!(comparable(parsed(&text), &want), want, "{}", text);
        let pretty = serde_json::to_string_pretty(&chunk).unwrap();
        let want = oracle(&pretty);
        prop_assert_eq!(comparable(parsed(&pretty), &want), want, "{}", pretty);
    }

    /// A stream's reader resumes each scan after the members the chunk before had the same,
    /// and reuses the scan of a chunk that differs from the one before only in its content
    /// string; whatever the chunks, it must read each exactly as a scan of that chunk alone
    /// does, down to the error message.
    #[test]
    fn a_streams_reader_reads_every_chunk_as_a_whole_scan_does(
        chunks in prop::collection::vec(
            (chunk(), any::<usize>(), json::value(), 0u8..6, new_content()),
            1..8,
        ),
    ) {
        let mut reader = ChunkReader::default();
        let mut before: Option<(Value, bool)> = None;
        for (mut chunk, at, with, variant, content) in chunks {
            // Most chunks of a stream share their first members; some differ anywhere, and
            // some first differ right at the end of a member the reader could resume after.
            // Many are the chunk before with another content, as most upstreams send them.
            if variant == 0 {
                swap_node(&mut chunk, at, with);
            }
            if variant == 2 && chunk.get("created").is_some() {
                let longer = [json!(12), json!(1.5), json!(1e3), json!("1")];
                chunk["created"] = longer[at % longer.len()].clone();
            }
            let mut pretty = variant == 1;
            if let (3 | 4, Some((last, last_pretty))) = (variant, &before) {
                chunk = with_content(last.clone(), content);
                pretty = *last_pretty;
            }
            let text = if pretty {
                serde_json::to_string_pretty(&chunk).unwrap()
            } else {
                chunk.to_string()
            };
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            let alone = Chunk::parse(bytes.clone());
            let streamed = reader.parse(bytes);
            if let (Err(a), Err(b)) = (&alone, &streamed) {
                prop_assert_eq!(a.to_string(), b.to_string(), "{}", text);
            }
            prop_assert_eq!(reading(streamed), reading(alone), "{}", text);
            before = Some((chunk, pretty));
        }
    }

    /// The chunks of most answers: one text with only the content string changing, which
    /// the reader does not scan again beyond that string. Sometimes a chunk differs
    /// elsewhere too, anywhere.
    #[test]
    fn a_stream_of_content_chunks_reads_as_whole_scans_do(
        base in chunk(),
        pretty in any::<bool>(),
        contents in prop::collection::vec((new_content(), any::<usize>(), json::value(), 0u8..8), 1..10),
    ) {
        let mut reader = ChunkReader::default();
        for (content, at, with, variant) in contents {
            let mut chunk = with_content(base.clone(), content);
            if variant == 0 {
                swap_node(&mut chunk, at, with);
            }
            let text = if pretty {
                serde_json::to_string_pretty(&chunk).unwrap()
            } else {
                chunk.to_string()
            };
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            let alone = Chunk::parse(bytes.clone());
            let streamed = reader.parse(bytes);
            if let (Err(a), Err(b)) = (&alone, &streamed) {
                prop_assert_eq!(a.to_string(), b.to_string(), "{}", text);
            }
            prop_assert_eq!(reading(streamed), reading(alone), "{}", text);
        }
    }
}

/// A content for a chunk like the one before: mostly a string (escapes, quotes and all),
/// sometimes any value, which a reader must not take for a string.
fn new_content() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any::<String>().prop_map(Value::String),
        1 => "[a-z \"\\\\]{0,6}".prop_map(Value::String),
        1 => json::value(),
    ]
}

/// `chunk` as a plain content chunk: its first choice of index 0, where it has one, with
/// `content` as its delta's only text and no finish reason.
fn with_content(mut chunk: Value, content: Value) -> Value {
    let choice = chunk
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .and_then(|choices| {
            choices
                .iter_mut()
                .find(|c| c.get("index") == Some(&json!(0)))
        })
        .and_then(Value::as_object_mut);
    let Some(choice) = choice else {
        return chunk;
    };
    if choice.contains_key("finish_reason") {
        choice.insert("finish_reason".into(), Value::Null);
    }
    if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
        for key in ["reasoning", "reasoning_content", "tool_calls"] {
            delta.shift_remove(key);
        }
        delta.insert("content".into(), content);
    }
    chunk
}
