//! The upstream's event stream, from bytes to chunks (`data_events`, then `chunks`), over
//! every way the bytes can be split into network reads; and `Chunk::parse` on its own.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use streamgate::upstream::{Chunk, UpstreamError, Usage, chunks, data_events};

use crate::json;

/// Splits `bytes` at the given points, as the network might deliver them.
fn split(bytes: &[u8], cuts: &[Index]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect()
}

/// Everything the gateway makes of a body delivered in these pieces.
fn relay(pieces: Vec<Bytes>) -> Vec<Result<Chunk, UpstreamError>> {
    let body = futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
    futures::executor::block_on(chunks(data_events(body)).collect())
}

fn cut_points() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..24)
}

/// Bytes that look like an event stream often enough to reach the parser's corners.
fn sse_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b": keep-alive".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b"retry: 10".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(br#"{"choices":[{"index":0,"delta":{"content":"#.to_vec()),
        Just(br#""x"}}]}"#.to_vec()),
        Just(br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#.to_vec()),
        Just(br#"{"error":{"message":"m"}}"#.to_vec()),
        Just(vec![0xff, 0xfe]),
        Just("é".as_bytes().to_vec()),
        json::value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
}

/// Holds for any output: after an error, nothing more comes.
fn nothing_after_an_error(items: &[Result<Chunk, UpstreamError>]) -> Result<(), TestCaseError> {
    if let Some(first) = items.iter().position(Result::is_err) {
        prop_assert_eq!(first, items.len() - 1, "items after an error");
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Delta {
    content: String,
    reasoning: Option<String>,
}

#[derive(Debug, Clone)]
struct Answer {
    deltas: Vec<Delta>,
    finish: &'static str,
    usage: Option<(u32, u32)>,
    done: bool,
    eol: &'static str,
    comments: Vec<bool>,
}

fn answer() -> impl Strategy<Value = Answer> {
    let delta = (any::<String>(), prop::option::of(any::<String>()))
        .prop_map(|(content, reasoning)| Delta { content, reasoning });
    (
        prop::collection::vec(delta, 0..12),
        prop::sample::select(&["stop", "length", "tool_calls", "content_filter"][..]),
        prop::option::of((any::<u32>(), any::<u32>())),
        any::<bool>(),
        prop::sample::select(&["\n", "\r\n", "\r"][..]),
        prop::collection::vec(any::<bool>(), 16),
    )
        .prop_map(|(deltas, finish, usage, done, eol, comments)| Answer {
            deltas,
            finish,
            usage,
            done,
            eol,
            comments,
        })
}

impl Answer {
    /// The upstream's bytes, and where the finish chunk begins.
    fn encode(&self) -> (Vec<u8>, usize) {
        let eol = self.eol;
        let mut out = String::new();
        let event = |out: &mut String, n: usize, data: &str| {
            if self.comments[n % self.comments.len()] {
                out.push_str(&format!(": keep-alive{eol}{eol}"));
            }
            out.push_str(&format!("data: {data}{eol}{eol}"));
        };
        for (n, delta) in self.deltas.iter().enumerate() {
            let mut d = json!({"content": delta.content});
            if let Some(r) = &delta.reasoning {
                d["reasoning_content"] = json!(r);
            }
            let chunk = json!({"id": "c", "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": d, "finish_reason": null}]});
            event(&mut out, n, &chunk.to_string());
        }
        let finish_at = out.len();
        let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": self.finish}]});
        event(&mut out, self.deltas.len(), &finish.to_string());
        if let Some((p, c)) = self.usage {
            let (p, c) = (u64::from(p), u64::from(c));
            let usage = json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}});
            event(&mut out, self.deltas.len() + 1, &usage.to_string());
        }
        if self.done {
            out.push_str(&format!("data: [DONE]{eol}{eol}"));
        }
        (out.into_bytes(), finish_at)
    }
}

/// A chunk's JSON string literal, decoded.
fn text(literal: Option<&[u8]>) -> Option<String> {
    literal.map(|l| serde_json::from_slice(l).unwrap())
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_pieces_never_panic_the_relay(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in cut_points(),
    ) {
        nothing_after_an_error(&relay(split(&bytes, &cuts)))?;
    }

    #[test]
    fn event_stream_soup_in_arbitrary_pieces_never_panics_the_relay(bytes in sse_soup(), cuts in cut_points()) {
        let whole = relay(vec![Bytes::from(bytes.clone())]);
        let pieces = relay(split(&bytes, &cuts));
        nothing_after_an_error(&pieces)?;
        // How the bytes were split changes nothing.
        prop_assert_eq!(format!("{whole:?}"), format!("{pieces:?}"));
    }

    #[test]
    fn an_event_handed_on_whole_is_its_data_framed(bytes in sse_soup(), cuts in cut_points()) {
        let body = futures::stream::iter(split(&bytes, &cuts).into_iter().map(Ok::<_, Infallible>));
        let events: Vec<_> = futures::executor::block_on(data_events(body).collect());
        for event in events.into_iter().flatten() {
            if let Some(wire) = event.wire {
                prop_assert_eq!(wire, [&b"data: "[..], &event.data, b"\n\n"].concat());
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_chunk_parser(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(chunk) = Chunk::parse(Bytes::from(bytes.clone())) {
            prop_assert_eq!(chunk.raw().as_ref(), &bytes[..]);
            for literal in [chunk.content_json(), chunk.reasoning_json(), chunk.tool_calls_json()].into_iter().flatten() {
                prop_assert!(serde_json::from_slice::<Value>(literal).is_ok());
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_chunk_parser(value in json::value()) {
        let _ = Chunk::parse(Bytes::from(value.to_string()));
    }

    #[test]
    fn a_well_formed_answer_comes_out_whole_however_it_is_split(answer in answer(), cuts in cut_points()) {
        let (bytes, _) = answer.encode();
        let items: Vec<Chunk> = relay(split(&bytes, &cuts))
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let expected = answer.deltas.len() + 1 + usize::from(answer.usage.is_some());
        prop_assert_eq!(items.len(), expected);
        for (chunk, delta) in items.iter().zip(&answer.deltas) {
            let content = (!delta.content.is_empty()).then(|| delta.content.clone());
            prop_assert_eq!(text(chunk.content_json()), content);
            let reasoning = delta.reasoning.clone().filter(|r| !r.is_empty());
            prop_assert_eq!(text(chunk.reasoning_json()), reasoning);
            prop_assert!(chunk.finish_reason().is_none());
        }
        let finish = &items[answer.deltas.len()];
        prop_assert_eq!(finish.finish_reason(), Some(answer.finish));
        if let Some((p, c)) = answer.usage {
            let (p, c) = (u64::from(p), u64::from(c));
            let usage = items.last().unwrap().usage();
            prop_assert_eq!(usage, Some(Usage { prompt_tokens: p, completion_tokens: c, total_tokens: p + c }));
        }
    }

    #[test]
    fn an_answer_cut_before_its_finish_is_reported_truncated(
        answer in answer(),
        cut in any::<Index>(),
        cuts in cut_points(),
    ) {
        let (bytes, finish_at) = answer.encode();
        let cut = cut.index(finish_at + 1);
        let items = relay(split(&bytes[..cut], &cuts));
        let last = items.last();
        // Wherever the cut falls, even inside a character, what was lost is an unfinished
        // event, never dispatched: the body was truncated, and says so.
        prop_assert!(matches!(last, Some(Err(UpstreamError::Truncated))), "{last:?}");
        prop_assert!(items[..items.len() - 1].iter().all(Result::is_ok));
    }
}
