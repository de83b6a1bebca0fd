//! Shared pieces of the streamgate benchmark tools: an incremental SSE splitter, latency
//! histogram summaries and `/proc` readers (CPU time, resident memory, descriptor limit).
//!
//! Nothing here is used by the gateway binary; this crate is a workspace member only so that
//! `cargo clippy --all-targets` and `cargo fmt` cover it.

pub mod hist;
pub mod procfs;
pub mod sse;
