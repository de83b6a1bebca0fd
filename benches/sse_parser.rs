//! The upstream SSE parser against eventsource-stream, which it replaced, on the same bytes in
//! one run: time and heap allocations per event.
//!
//!     cargo bench --bench sse_parser
//!
//! Cases: typical chat chunks in 1,460-byte network reads, and one 2 MiB reasoning line in
//! 16 KiB reads (eventsource-stream reparses the pending line on every read).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use streamgate::upstream::data_events;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn pieces(text: &[u8], size: usize) -> Vec<Bytes> {
    text.chunks(size).map(Bytes::copy_from_slice).collect()
}

fn body(pieces: Vec<Bytes>) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::iter(pieces.into_iter().map(Ok))
}

/// Best of `rounds`: (seconds, allocations) for one pass over `pieces`.
fn measure(
    rounds: usize,
    pieces: &[Bytes],
    events: usize,
    run: impl Fn(&[Bytes]) -> usize,
) -> (f64, u64) {
    let mut best = (f64::MAX, u64::MAX);
    for _ in 0..rounds {
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        let got = run(pieces);
        let seconds = start.elapsed().as_secs_f64();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        assert_eq!(got, events);
        best = (best.0.min(seconds), best.1.min(allocations));
    }
    best
}

fn ours(pieces: &[Bytes]) -> usize {
    futures::executor::block_on(
        data_events(body(pieces.to_vec()))
            .filter(|e| futures::future::ready(e.is_ok()))
            .count(),
    )
}

fn theirs(pieces: &[Bytes]) -> usize {
    futures::executor::block_on(
        body(pieces.to_vec())
            .eventsource()
            .filter(|e| futures::future::ready(e.is_ok()))
            .count(),
    )
}

fn main() {
    let chunk = r#"{"id":"chatcmpl-8x2Q","object":"chat.completion.chunk","created":1731000000,"model":"gpt-4o-mini","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}"#;
    let n = 20_000;
    let typical = format!("data: {chunk}\n\n").repeat(n);
    let long = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"reasoning_content\":\"{}\"}}}}]}}\n\n",
        "r".repeat(2 << 20)
    );
    let cases = [
        (
            "20,000 chat chunks, 1,460-byte reads",
            pieces(typical.as_bytes(), 1460),
            n,
            10,
        ),
        (
            "one 2 MiB line, 16 KiB reads",
            pieces(long.as_bytes(), 16 * 1024),
            1,
            3,
        ),
    ];
    println!("| case | parser | time per event | allocations per event |");
    println!("|---|---|---|---|");
    for (name, pieces, events, rounds) in &cases {
        let (ours_s, ours_a) = measure(*rounds, pieces, *events, ours);
        let (theirs_s, theirs_a) = measure(*rounds, pieces, *events, theirs);
        let per = |s: f64| s / *events as f64 * 1e9;
        println!(
            "| {name} | streamgate | {:.0} ns | {:.2} |",
            per(ours_s),
            ours_a as f64 / *events as f64
        );
        println!(
            "| {name} | eventsource-stream 0.2.3 | {:.0} ns | {:.2} |",
            per(theirs_s),
            theirs_a as f64 / *events as f64
        );
        println!("| {name} | ratio | {:.1}x faster | |", theirs_s / ours_s);
    }
}
