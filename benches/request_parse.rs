//! What reading a chat request costs: `ChatRequest::parse` on a one-line prompt (what the load
//! generator sends) and on a 4 KB history of 21 messages with code in it (what a chat front-end
//! sends by its tenth turn: every turn carries the whole conversation), bench/history-4k.json.
//!
//!     cargo bench --bench request_parse
//!
//! prints the best time per parse over several rounds. Instructions, which unlike time repeat
//! on a shared machine: `PARSES=1001 BODY=long valgrind --tool=callgrind BENCH_BINARY` runs
//! exactly that many parses of one body (then take the run with `PARSES=1` from it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use streamgate::request::{ChatRequest, Dialect};
use streamgate::settings::Settings;

fn short() -> String {
    r#"{"messages":[{"role":"user","content":"Tell me a story about a relay."}],"stream":true}"#
        .to_owned()
}

/// bench/history-4k.json's messages (the history `bench/run.sh` can send in every request),
/// with the members an OpenAI SDK adds.
fn long() -> String {
    let history = include_str!("../bench/history-4k.json").trim();
    let members = &history[1..history.len() - 1];
    format!(
        r#"{{"model":"gpt-4o-mini",{members},"stream":true,"stream_options":{{"include_usage":true}},"temperature":0.7}}"#
    )
}

fn parse(body: &str, settings: &Settings) -> bool {
    let request = ChatRequest::parse(
        std::hint::black_box(body.as_bytes()),
        Dialect::OpenAi,
        settings,
    )
    .expect("the bench bodies are valid");
    request.stream
}

fn main() {
    let settings = Settings::from_pairs(&[("UPSTREAM_BASE_URL", "http://127.0.0.1:1/v1")]).unwrap();
    if let Ok(n) = std::env::var("PARSES") {
        let body = if std::env::var("BODY").as_deref() == Ok("long") {
            long()
        } else {
            short()
        };
        let n: usize = n.parse().expect("PARSES is a count");
        let streamed = (0..n).filter(|_| parse(&body, &settings)).count();
        println!("{streamed} of {n} parses of a {}-byte body", body.len());
        return;
    }
    println!("| body | bytes | time per parse (best of 20 rounds) |");
    println!("|---|---:|---:|");
    for (name, body, per_round) in [
        ("one-line prompt", short(), 20_000),
        ("21-message history", long(), 1_000),
    ] {
        let best = (0..20)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..per_round {
                    parse(&body, &settings);
                }
                start.elapsed().as_secs_f64() / per_round as f64
            })
            .fold(f64::MAX, f64::min);
        println!("| {name} | {} | {:.2} µs |", body.len(), best * 1e6);
    }
}
