//! Shared pieces of the streamgate benchmark tools: an incremental SSE splitter, latency
//! histogram summaries, `/proc` readers (CPU time, resident memory, descriptor limit) and a
//! sub-millisecond timer for the paced upstream.
//!
//! Nothing here is used by the gateway binary; this crate is a workspace member only so that
//! `cargo clippy --all-targets` and `cargo fmt` cover it.

pub mod hist;
pub mod http1;
pub mod pace;
pub mod procfs;
pub mod sse;

/// A tokio runtime: current-thread for one thread (no cross-thread wake-ups, and on a 2-core
/// machine it never takes more than one core from the system under test), else multi-thread.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
